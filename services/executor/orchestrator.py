"""The orchestrator (inside the executor api process): decides what runs next, dispatches
node-run commands to workers over `NODE_RUNS`, and records their results from `NODE_RESULTS`.

Every decision is first stored in the `Execution` aggregate, then acted on: a node is marked
started before its command is published, and a result is applied once however often it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind, StatusCode

from services.executor import messages
from services.executor.application import ExecutorApplication
from services.executor.domain import FINAL_STATUSES, Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.metrics import NODE_QUEUE, NODE_RUN_SECONDS, NODE_RUNS
from services.executor.progression import Progression, apply_result
from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import (
    NODE_RESULTS_STREAM,
    NODE_RUN_SUBJECT,
    NODE_RUNS_STREAM,
    NODE_WORKERS_DURABLE,
    node_workers_consumer,
)
from shared.eventstore import STORE_UNREACHABLE
from shared.tracing import context_from, inject_headers, tracer
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph

log = logging.getLogger("agentflow.orchestrator")
_tracer = tracer("agentflow.orchestrator")

ORCHESTRATOR_DURABLE = "orchestrator"


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
    ) -> None:
        self._app = application
        self._bus = bus
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
        self.results = PullConsumer(
            bus,
            stream=NODE_RESULTS_STREAM,
            durable=ORCHESTRATOR_DURABLE,
            subject="evt.node.>",
            handler=self.on_result,
            # Results of different executions are applied side by side; one execution's
            # wait for its lock (`advance`), so they are still applied one at a time.
            concurrency=concurrency,
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._bus.on_connected(self._declare_worker_queue)
        self.results.start()
        for job in (self._watch_queue(), self._expire_overdue()):
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
        await self.results.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def kick(self, execution_id: UUID, delay_s: float = 0.0, *, recover: bool = False) -> None:
        """Advance an execution soon, in the background."""
        task = asyncio.create_task(self._advance_later(execution_id, delay_s, recover))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def kick_from_thread(self, execution_id: UUID) -> None:
        """`kick` from a sync route (FastAPI's threadpool): re-send what is in flight."""
        assert self._loop is not None, "start() binds the event loop"
        self._loop.call_soon_threadsafe(lambda: self.kick(execution_id, recover=True))

    async def recover(self, execution_ids: list[UUID]) -> None:
        """After a restart: carry on every execution that was still going."""
        if execution_ids:
            log.info("carrying on %d unfinished executions", len(execution_ids))
        for execution_id in execution_ids:
            self.kick(execution_id, recover=True)

    async def _advance_later(self, execution_id: UUID, delay_s: float, recover: bool) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
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

    @staticmethod
    def _outgoing(command: NodeRunCommand) -> OutgoingMessage:
        """The command as a message whose headers carry a span of the execution's trace."""
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
        task = asyncio.create_task(self._retry(execution_id, run_key, attempt, delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, execution_id: UUID, run_key: str, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
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
