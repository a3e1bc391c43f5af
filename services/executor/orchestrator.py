"""The orchestrator (inside the executor api process): decides what runs next, dispatches
node-run commands to workers over `NODE_RUNS`, and records their results from `NODE_RESULTS`.

Every decision is first stored in the `Execution` aggregate, then acted on: a node is marked
started before its command is published, and a result is applied once however often it comes.

With several api replicas each decides the executions of the partitions it holds a lease on
(services/executor/partitions.py, ADR 0009): their results come on the partition's subject
to its durable consumer, pulled by the owner only; a start or resume taken by another replica
is handed to the owner on the same subject; a replica that gains a partition carries its
unfinished runs on. Decisions stay safe while two replicas briefly both decide a partition:
the store refuses the second of two conflicting saves (`ExecutorApplication.change` retries
from fresh state) and a result applied twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from opentelemetry.trace import SpanKind, StatusCode

from services.executor import messages
from services.executor.application import ExecutionNotFound, ExecutorApplication
from services.executor.domain import FINAL_STATUSES, Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.metrics import NODE_QUEUE, NODE_RUN_SECONDS, NODE_RUNS
from services.executor.partitions import (
    AdvanceRequest,
    Partitioning,
    PartitionLeases,
    partition_of,
)
from services.executor.progression import Progression, apply_result
from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import (
    LEGACY_NODE_RESULTS,
    NODE_RESULTS_STREAM,
    NODE_RUN_SUBJECT,
    NODE_RUNS_STREAM,
    NODE_WORKERS_DURABLE,
    PARTITION_HEADER,
    advance_subject,
    durable_consumer,
    node_result_subject,
    node_workers_consumer,
    partition_results,
    results_durable,
)
from shared.eventstore import STORE_UNREACHABLE
from shared.tracing import context_from, inject_headers, tracer
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph

log = logging.getLogger("agentflow.orchestrator")
_tracer = tracer("agentflow.orchestrator")

# Results sent before partitions (`evt.node.<execution_id>`): every replica pulls this durable
# and forwards each result to its execution's partition.
ORCHESTRATOR_DURABLE = results_durable(None)
# A start left pending this long was not handed on (its replica died in between): its
# partition's owner starts it.
PENDING_TOO_LONG_S = 30.0


Retry = tuple[str, int, float]  # run key, next attempt, delay in seconds


class Orchestrator:
    def __init__(
        self,
        application: ExecutorApplication,
        bus: JetStreamBus,
        *,
        inline: bool = True,
        node_ack_wait_s: float = 30.0,
        concurrency: int = 32,
        max_run_s: float | None = None,
        overdue: Callable[[datetime], list[UUID]] | None = None,
        max_loop_items: int | None = None,
        token_budget: int | None = None,
        max_node_runs: int | None = None,
        partitioning: Partitioning | None = None,
        unfinished: Callable[[], list[UUID]] | None = None,
        pending: Callable[[datetime], list[UUID]] | None = None,
    ) -> None:
        self._app = application
        self._bus = bus
        # What a gained partition carries on, and starts whose hand-off was lost.
        self._unfinished = unfinished
        self._pending = pending
        # Runs older than `max_run_s` are failed; `overdue(started_before)` lists them.
        self._max_run_s = max_run_s
        self._overdue = overdue
        self._max_loop_items = max_loop_items
        self._token_budget = token_budget  # model tokens per run (None: no budget)
        self._max_node_runs = max_node_runs  # node runs per run, loops included (None: no cap)
        self._inline = inline  # run control nodes here (services/executor/inline.py)
        self._node_ack_wait_s = node_ack_wait_s
        self._indexes: dict[UUID, GraphIndex] = {}
        self._locks: dict[UUID, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._concurrency = concurrency
        self._partitioning = partitioning or Partitioning()
        self.leases = PartitionLeases(
            bus, self._partitioning, on_gained=self._gained, on_lost=self._lost
        )
        self._consumers: dict[int, PullConsumer] = {}  # by partition, made when first gained
        self._carried: set[int] = set()  # partitions held whose runs were carried on
        # Decisions under way: each runs to its end (sent, retries scheduled) even when the
        # one waiting for it is cancelled, and a partition is given up only after them.
        self._deciding: set[asyncio.Future[None]] = set()
        self.legacy = PullConsumer(
            bus,
            stream=NODE_RESULTS_STREAM,
            durable=ORCHESTRATOR_DURABLE,
            subject=LEGACY_NODE_RESULTS,
            handler=self._forward,
            concurrency=4,
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._bus.on_connected(self._declare_worker_queue)
        self._bus.on_connected(self._narrow_legacy_durable)  # before the legacy consumer's
        self.legacy.start()
        self.leases.start()
        for job in (self._watch_queue(), self._expire_overdue(), self._start_stalled()):
            self._spawn(job)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        if self._stopping:  # what it would do is the next owner's carry-on
            job.close()
            return
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _declare_worker_queue(self, js: JetStreamContext) -> None:
        """Make the workers' consumer exist before any worker does: with none running (scaled
        to zero), the queue's lag is still measured on it and wakes the autoscaler."""
        try:
            await js.add_consumer(NODE_RUNS_STREAM, node_workers_consumer(self._node_ack_wait_s))
        except Exception as exc:  # e.g. NATS went away again; the next connect retries
            log.warning("declaring the workers' consumer failed: %r", exc)

    async def _watch_queue(self, every_s: float = 5.0) -> None:
        """Keep the node-run queue gauges current (what autoscaling and dashboards read)."""
        while True:
            try:
                info = await self._bus.js.consumer_info(NODE_RUNS_STREAM, NODE_WORKERS_DURABLE)
            except Exception:  # NATS down, or no worker has created the consumer yet
                await asyncio.sleep(every_s)
                continue
            NODE_QUEUE.labels("pending").set(info.num_pending or 0)
            NODE_QUEUE.labels("in_flight").set(info.num_ack_pending or 0)
            NODE_QUEUE.labels("redelivered").set(info.num_redelivered or 0)
            await asyncio.sleep(every_s)

    async def _narrow_legacy_durable(self, js: JetStreamContext) -> None:
        """Before partitions the `orchestrator` durable read all of `evt.node.>`; it keeps its
        place but now reads only results sent the old way (it would take partitions' too)."""
        try:
            info = await js.consumer_info(NODE_RESULTS_STREAM, ORCHESTRATOR_DURABLE)
        except NotFoundError:
            return  # made with the narrow filter by the legacy consumer
        if info.config.filter_subject != LEGACY_NODE_RESULTS:
            config = durable_consumer(ORCHESTRATOR_DURABLE, LEGACY_NODE_RESULTS, ack_wait_s=30.0)
            await js.add_consumer(NODE_RESULTS_STREAM, config)
            log.info("consumer %s now reads only %s", ORCHESTRATOR_DURABLE, LEGACY_NODE_RESULTS)

    # -- partitions --------------------------------------------------------------------------

    def _owns(self, execution_id: UUID) -> bool:
        partition = self.leases.partition(execution_id)
        return partition is not None and self.leases.owns(partition)

    async def _gained(self, partitions: frozenset[int]) -> None:
        count = self.leases.count or 1
        for partition in partitions:
            consumer = self._consumers.get(partition)
            if consumer is None:
                consumer = PullConsumer(
                    self._bus,
                    stream=NODE_RESULTS_STREAM,
                    durable=results_durable(partition),
                    subject=partition_results(partition),
                    handler=self._on_partition_message,
                    # Results of different executions are applied side by side (one
                    # execution's wait for its lock in `advance`); the replica's whole
                    # `concurrency` when it holds every partition.
                    concurrency=max(2, -(-self._concurrency // count)),
                    # Results in the hands of a replica that died are delivered again once
                    # its partitions have surely moved (about a lease time).
                    ack_wait_s=2 * self._partitioning.lease_s,
                )
                self._consumers[partition] = consumer
            consumer.start()
        self._carried |= partitions
        self._spawn(self._carry_on(partitions))

    async def _carry_on(self, partitions: frozenset[int]) -> None:
        """Carry on the unfinished runs of partitions just gained (their timers and whatever
        their last owner had not sent died with it, or stayed behind with it)."""
        if self._unfinished is None:
            return
        while True:
            try:
                unfinished = await asyncio.to_thread(self._unfinished)
                break
            except STORE_UNREACHABLE as exc:
                log.warning("store unreachable listing unfinished runs; trying again: %s", exc)
                await asyncio.sleep(1.0)
        count = await self.leases.partition_count()
        mine = [
            execution_id
            for execution_id in unfinished
            if (partition := partition_of(execution_id, count)) in partitions
            and self.leases.owns(partition)
        ]
        if mine:
            log.info("carrying on %d unfinished executions of partitions %s", len(mine),
                     sorted(partitions))  # fmt: skip
        for execution_id in mine:
            self.kick(execution_id, recover=True)

    async def _lost(self, partitions: frozenset[int]) -> None:
        """Stop deciding there: no more results taken, and every decision under way finished
        and sent, before the lease goes to another replica (which then reads them all)."""
        self._carried -= partitions
        grace = self._partitioning.lease_s / 4
        stopping = [self._consumers[n].stop(grace) for n in partitions if n in self._consumers]
        await asyncio.gather(*stopping)
        await asyncio.gather(*list(self._deciding), return_exceptions=True)

    async def _on_partition_message(self, message: Msg) -> None:
        try:
            if message.subject.endswith(".advance"):
                request = AdvanceRequest.model_validate_json(message.data)
                await self.advance(UUID(request.execution_id), recover=request.recover)
            else:
                await self.on_result(message)
        except ExecutionNotFound:  # never will be: delivering it again would loop for ever
            log.warning("dropped %s: no such execution", message.subject)

    async def _forward(self, message: Msg) -> None:
        """A result sent the old way (`evt.node.<execution_id>`): on to its partition."""
        result = NodeRunResult.model_validate_json(message.data)
        partition = partition_of(UUID(result.execution_id), await self.leases.partition_count())
        subject = node_result_subject(result.execution_id, partition)
        await self._bus.publish(subject, message.data, msg_id=f"{result.msg_id}:p{partition}")

    async def _hand_off(self, execution_id: UUID, partition: int, recover: bool) -> None:
        """Ask the partition's owner to advance the execution; durable once JetStream has it,
        whoever owns the partition then (or later). Sent again until it is stored."""
        request = AdvanceRequest(execution_id=str(execution_id), recover=recover)
        msg_id = f"advance:{execution_id}:{uuid.uuid4().hex}"
        delay = 0.2
        while True:
            try:
                await self._bus.publish(
                    advance_subject(partition, str(execution_id)),
                    request.model_dump_json().encode(),
                    msg_id=msg_id,
                )
                return
            except BusUnavailable as exc:
                log.warning("handing %s to partition %d waits for NATS: %s", execution_id,
                            partition, exc)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _start_stalled(self, every_s: float = 10.0) -> None:
        """Start the runs of our partitions still pending long after they were recorded: the
        replica that recorded one died before handing it on."""
        if self._pending is None:
            return
        while True:
            await asyncio.sleep(every_s)
            cutoff = datetime.now(UTC) - timedelta(seconds=PENDING_TOO_LONG_S)
            try:
                stalled = [
                    i for i in await asyncio.to_thread(self._pending, cutoff) if self._owns(i)
                ]
            except Exception:
                log.exception("listing pending executions failed; trying again shortly")
                continue
            if stalled:
                log.warning("starting %d executions pending for over %gs", len(stalled),
                            PENDING_TOO_LONG_S)  # fmt: skip
            for execution_id in stalled:
                self.kick(execution_id)

    async def _expire_overdue(self) -> None:
        """Fail every run that has gone on longer than the maximum run time (a node stuck on
        a dead provider, a loop that never ends): nothing runs forever."""
        if self._max_run_s is None or self._overdue is None:
            return
        every_s = min(5.0, max(0.5, self._max_run_s / 4))
        while True:
            await asyncio.sleep(every_s)
            cutoff = datetime.now(UTC) - timedelta(seconds=self._max_run_s)
            try:
                for execution_id in await asyncio.to_thread(self._overdue, cutoff):
                    if self._owns(execution_id):  # another replica fails its own
                        await self._expire(execution_id)
            except Exception:
                log.exception("expiring overdue executions failed; trying again shortly")

    async def _expire(self, execution_id: UUID) -> None:
        assert self._max_run_s is not None
        seconds = f"{self._max_run_s:g}"

        reason = messages.RUN_TOO_LONG.render("zh", seconds=seconds)

        def expire(execution: Execution) -> bool:
            if not execution.fail(reason):
                return False
            execution.record_log("error", reason)
            return True

        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            await asyncio.to_thread(self._app.change, execution_id, expire)
        log.warning("execution %s ran longer than %ss and was failed", execution_id, seconds)
        self._forget(execution_id)

    async def stop(self) -> None:
        """Stop deciding, then give the partitions up: the leases are renewed meanwhile, so no
        replica claims one before every decision made here is stored and sent."""
        self.leases.freeze()
        self._stopping = True
        grace = self._partitioning.lease_s / 4
        await asyncio.gather(
            self.legacy.stop(grace), *(c.stop(grace) for c in self._consumers.values())
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*list(self._deciding), return_exceptions=True)
        await self.leases.stop()

    def kick(self, execution_id: UUID, delay_s: float = 0.0, *, recover: bool = False) -> None:
        """Advance an execution soon, in the background: here if this replica owns its
        partition, else by handing it to the owner."""
        self._spawn(self._advance_later(execution_id, delay_s, recover))

    def kick_from_thread(self, execution_id: UUID) -> None:
        """`kick` from a sync route (FastAPI's threadpool): re-send what is in flight."""
        assert self._loop is not None, "start() binds the event loop"
        self._loop.call_soon_threadsafe(lambda: self.kick(execution_id, recover=True))

    async def recover(self, execution_ids: list[UUID]) -> None:
        """After a restart: carry on the executions that were still going. Each partition's
        are carried on by the replica that gains it (`_gained`, this one included), so only
        those of a partition held here and not carried on yet are advanced."""
        count = self.leases.count
        if count is None:
            return  # nothing held yet: gaining a partition carries it on
        mine = [
            execution_id
            for execution_id in execution_ids
            if (partition := partition_of(execution_id, count)) in self.leases.owned
            and partition not in self._carried
        ]
        if mine:
            log.info("carrying on %d unfinished executions", len(mine))
        for execution_id in mine:
            self.kick(execution_id, recover=True)

    async def _advance_later(self, execution_id: UUID, delay_s: float, recover: bool) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        partition = partition_of(execution_id, await self.leases.partition_count())
        if not self.leases.owns(partition):
            await self._hand_off(execution_id, partition, recover)
            return
        try:
            await self.advance(execution_id, recover=recover)
        except STORE_UNREACHABLE as exc:
            # Nothing was decided: carry it on (as after a restart) once the store is back.
            log.warning("store unreachable advancing %s; trying again: %s", execution_id, exc)
            self.kick(execution_id, 1.0, recover=True)
        except Exception:
            log.exception("advancing execution %s failed", execution_id)

    # -- deciding ----------------------------------------------------------------------------

    async def advance(
        self, execution_id: UUID, *, recover: bool = False, result: NodeRunResult | None = None
    ) -> None:
        """Decide and send what comes next; with `result`, record it first (one save)."""
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            await self._settle(self._decide_and_send(execution_id, recover, result))

    async def _settle(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a decision to its end even if our caller is cancelled (a consumer stopping, a
        shutdown): stored but never sent, it would wait for a carry-on that another replica
        may have made already."""
        task = asyncio.ensure_future(work)
        self._deciding.add(task)
        task.add_done_callback(self._deciding.discard)
        await asyncio.shield(task)

    async def _decide_and_send(
        self, execution_id: UUID, recover: bool, result: NodeRunResult | None
    ) -> None:
        commands, retries, finished = await asyncio.to_thread(
            self._decide, execution_id, recover, result
        )
        try:
            await self._dispatch(commands)
        except BusUnavailable:
            # The decisions are stored: send again (as after a restart) once NATS is back.
            log.warning("NATS unavailable; re-sending %s's commands shortly", execution_id)
            self.kick(execution_id, 1.0, recover=True)
        self._follow_up(execution_id, retries, finished)

    def _follow_up(self, execution_id: UUID, retries: list[Retry], finished: bool) -> None:
        """After a decision: schedule the attempts it put off, forget a finished run."""
        for run_key, attempt, delay_s in retries:
            self.kick_retry(execution_id, run_key, attempt, delay_s)
        if finished:
            self._forget(execution_id)

    def _forget(self, execution_id: UUID) -> None:
        self._locks.pop(execution_id, None)
        self._indexes.pop(execution_id, None)

    async def _dispatch(self, commands: list[NodeRunCommand]) -> None:
        if commands:
            await self._bus.publish_batch([self._outgoing(c) for c in commands])

    def _outgoing(self, command: NodeRunCommand) -> OutgoingMessage:
        """The command as a message whose headers carry a span of the execution's trace and
        the partition its result goes to."""
        attributes: dict[str, str | int] = {
            "agentflow.execution_id": command.execution_id,
            "agentflow.node_id": command.node_id,
            "agentflow.attempt": command.attempt,
        }
        with _tracer.start_as_current_span(
            f"dispatch {command.node_type}",
            context=context_from(command.trace),
            kind=SpanKind.PRODUCER,
            attributes=attributes,
        ):
            headers = dict(inject_headers({}))
        partition = self.leases.partition(UUID(command.execution_id))
        if partition is not None:
            headers[PARTITION_HEADER] = str(partition)
        return OutgoingMessage(
            NODE_RUN_SUBJECT, command.model_dump_json().encode(), command.msg_id, headers
        )

    def _index(self, execution: Execution) -> GraphIndex:
        index = self._indexes.get(execution.id)
        if index is None:
            index = GraphIndex(WorkflowGraph.model_validate(execution.graph))
            self._indexes[execution.id] = index
        return index

    def _progression(self, execution: Execution) -> Progression:
        return Progression(
            execution,
            self._index(execution),
            inline=self._inline,
            max_loop_items=self._max_loop_items,
            token_budget=self._token_budget,
            max_node_runs=self._max_node_runs,
        )

    def _decide(
        self, execution_id: UUID, recover: bool, result: NodeRunResult | None
    ) -> tuple[list[NodeRunCommand], list[Retry], bool]:
        passes: list[Progression] = []  # the last one is the pass that was saved

        def step(execution: Execution) -> bool:
            recorded = False
            retries: list[Retry] = []
            if result is not None:
                recorded, delay = apply_result(execution, self._index(execution), result)
                if delay is not None:
                    retries.append((result.run_key, result.attempt + 1, delay))
            progression = self._progression(execution)
            progression.retries.extend(retries)
            progression.run(recover=recover)
            passes.append(progression)
            return recorded or progression.changed

        execution = self._app.change(execution_id, step)
        return self._settled(passes[-1]), passes[-1].retries, execution.status in FINAL_STATUSES

    @staticmethod
    def _settled(progression: Progression) -> list[NodeRunCommand]:
        """Report the control nodes the saved pass ran (metrics, and a span each in the
        execution's trace); its commands are what to send."""
        trace = context_from(getattr(progression.execution, "trace", None) or {})
        for run in progression.ran_inline:
            NODE_RUNS.labels(run.node_type, run.outcome, "orchestrator").inc()
            NODE_RUN_SECONDS.labels(run.node_type, "orchestrator").observe(run.seconds)
            span = _tracer.start_span(
                f"run {run.node_type}",
                context=trace,
                kind=SpanKind.INTERNAL,
                start_time=run.started_ns,
                attributes={
                    "agentflow.execution_id": str(progression.execution.id),
                    "agentflow.node_id": run.node_id,
                    "agentflow.attempt": run.attempt,
                    "agentflow.runner": "orchestrator",
                },
            )
            if run.outcome != "ok":
                span.set_status(StatusCode.ERROR, run.outcome)
            span.end(end_time=run.ended_ns)
        return progression.commands

    # -- results -----------------------------------------------------------------------------

    async def on_result(self, message: Msg) -> None:
        result = NodeRunResult.model_validate_json(message.data)
        await self.advance(UUID(result.execution_id), result=result)

    def kick_retry(self, execution_id: UUID, run_key: str, attempt: int, delay_s: float) -> None:
        self._spawn(self._retry(execution_id, run_key, attempt, delay_s))

    async def _retry(self, execution_id: UUID, run_key: str, attempt: int, delay_s: float) -> None:
        # Here even if the partition has moved since: its new owner may have read the run
        # before the failure was stored, and starting the attempt twice changes nothing.
        await asyncio.sleep(delay_s)
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            await self._settle(self._restart_and_send(execution_id, run_key, attempt))

    async def _restart_and_send(self, execution_id: UUID, run_key: str, attempt: int) -> None:
        try:
            commands, retries, finished = await asyncio.to_thread(
                self._restart, execution_id, run_key, attempt
            )
        except STORE_UNREACHABLE as exc:
            # A carry-on (recover) starts the attempts whose backoff is over, once it can.
            log.warning("store unreachable retrying %s; trying again: %s", execution_id, exc)
            self.kick(execution_id, 1.0, recover=True)
            return
        try:
            await self._dispatch(commands)
        except BusUnavailable:
            self.kick(execution_id, 1.0, recover=True)  # the attempt is stored as started
        self._follow_up(execution_id, retries, finished)

    def _restart(
        self, execution_id: UUID, run_key: str, attempt: int
    ) -> tuple[list[NodeRunCommand], list[Retry], bool]:
        passes: list[Progression] = []

        def start_again(execution: Execution) -> bool:
            progression = self._progression(execution)
            progression.start_again(run_key, attempt)
            if progression.changed:  # a control node run here: carry on from its result
                progression.run()
            passes.append(progression)
            return progression.changed

        execution = self._app.change(execution_id, start_again)
        return self._settled(passes[-1]), passes[-1].retries, execution.status in FINAL_STATUSES
