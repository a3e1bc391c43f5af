"""A stateless node runner: pulls `cmd.node.run`, runs the node, publishes the result, acks.

Killed mid-run, it loses nothing: the unacked command is redelivered to another worker and
the result carries the same message id, so the orchestrator applies it once. While a node
runs, the worker tells JetStream it is still working (`in_progress`) so a long LLM call is
not handed to a second worker. A command delivered `node_max_deliveries` times without a
result (every worker that took it died) fails its node instead of circling forever.
services/executor/worker/main.py wires one up (`python -m services.executor.worker`); scale by
running more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence

from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind, StatusCode

from services.executor.messages import (
    NODE_INTERNAL_ERROR,
    NOT_SUPPORTED_YET,
    NodeRunCommand,
    NodeRunResult,
    new_incident_id,
)
from services.executor.metrics import NODE_RUN_SECONDS, NODE_RUNS
from services.executor.node_kinds import NodeKind, configured
from services.executor.node_run import NodeResult, NodeRunError
from services.executor.settings import ExecutorSettings
from services.executor.worker.runners.context import ChunkSink, NodeAttempt, NodeServices
from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import (
    NODE_RUN_SUBJECT,
    NODE_RUNS_STREAM,
    NODE_WORKERS_DURABLE,
    result_subject,
)
from shared.i18n import Language, LocalizedError, Message
from shared.tracing import context_from, tracer
from shared.workflow.nodes import NodeData

log = logging.getLogger("agentflow.worker")
_tracer = tracer("agentflow.worker")

WORKERS_DURABLE = NODE_WORKERS_DURABLE
_GAVE_UP = Message(
    "节点已投递 {n} 次,每个接手的执行器都在完成前退出了",
    "the node was delivered {n} times and every worker that took it stopped before finishing",
)
_TIMED_OUT = Message("{seconds} 秒后超时", "timed out after {seconds}s")


def live_subject(execution_id: str) -> str:
    """Core NATS (not stored): text chunks for the execution's WebSocket viewers."""
    return f"live.execution.{execution_id}"


class Worker:
    def __init__(
        self, bus: JetStreamBus, settings: ExecutorSettings, services: NodeServices
    ) -> None:
        self._bus = bus
        self._settings = settings
        self._services = services
        self.consumer = PullConsumer(
            bus,
            stream=NODE_RUNS_STREAM,
            durable=WORKERS_DURABLE,
            subject=NODE_RUN_SUBJECT,
            handler=self.handle,
            batch=8,
            ack_wait_s=settings.node_ack_wait_s,
            concurrency=settings.worker_concurrency,
        )

    async def handle(self, message: Msg) -> None:
        command = NodeRunCommand.model_validate_json(message.data)
        deliveries = message.metadata.num_delivered or 1
        if deliveries > self._settings.node_max_deliveries:
            log.warning("giving up on %s after %d deliveries", command.msg_id, deliveries - 1)
            result = self._failure(
                command, _GAVE_UP.render(self._language(command), n=deliveries - 1), 0
            )
            NODE_RUNS.labels(command.node_type, "gave_up", "worker").inc()
        else:
            heartbeat = asyncio.create_task(self._heartbeat(message))
            try:
                with _tracer.start_as_current_span(
                    f"run {command.node_type}",
                    context=context_from(message.headers),
                    kind=SpanKind.CONSUMER,
                    attributes={
                        "agentflow.execution_id": command.execution_id,
                        "agentflow.node_id": command.node_id,
                        "agentflow.attempt": command.attempt,
                        "agentflow.delivery": deliveries,
                    },
                ) as span:
                    result, outcome = await self.run(command)
                    if not result.ok:
                        span.set_status(StatusCode.ERROR, result.error or "failed")
            finally:
                heartbeat.cancel()
            NODE_RUNS.labels(command.node_type, outcome, "worker").inc()
            NODE_RUN_SECONDS.labels(command.node_type, "worker").observe(result.duration_ms / 1000)
        # Publish before the ack (the consumer acks when this returns): a crash in between
        # re-runs the node and re-publishes a result that JetStream deduplicates.
        await self._publish(message, result)

    async def _publish(self, message: Msg, result: NodeRunResult) -> None:
        """Send the result. While NATS is away the result is kept (and the command, by
        heartbeats) and sent once NATS is back: dropping it would run the node, an LLM call
        perhaps, a second time after the redelivery."""
        outgoing = OutgoingMessage(
            # The partition the orchestrator named (ADR 0009), or the subject of old.
            subject=result_subject(result.execution_id, message.headers),
            payload=result.model_dump_json().encode(),
            msg_id=result.msg_id,
        )
        heartbeat: asyncio.Task[None] | None = None
        delay = 0.2
        try:
            while True:
                try:
                    await self._bus.publish_batch([outgoing])
                    return
                except BusUnavailable as exc:
                    if heartbeat is None:
                        log.warning("holding the result of %s until NATS is back: %s",
                                    result.msg_id, exc)  # fmt: skip
                        heartbeat = asyncio.create_task(self._heartbeat(message))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()

    async def _heartbeat(self, message: Msg) -> None:
        interval = self._settings.node_ack_wait_s / 3
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(Exception):
                await message.in_progress()

    async def run(self, command: NodeRunCommand) -> tuple[NodeRunResult, str]:
        """Run one node attempt; every failure becomes a result, never an exception. The
        outcome (ok, failed, retryable, timeout) labels the node-run metrics."""
        started = time.perf_counter()
        language = self._language(command)
        try:
            kind, config = configured(command.node_type, command.data)
            timeout = config.timeout
            result = await asyncio.wait_for(self._execute(kind, config, command, language), timeout)
        except TimeoutError:
            text = _TIMED_OUT.render(language, seconds=f"{timeout:g}")
            return self._failure(command, text, _ms(started), retryable=True), "timeout"
        except NodeRunError as exc:
            failure = self._failure(
                command, exc.render(language), _ms(started), exc.retryable, exc.logs
            )
            return failure, "retryable" if exc.retryable else "failed"
        except LocalizedError as exc:  # a template beyond its bounds: the user's, not a bug
            return self._failure(command, exc.render(language), _ms(started)), "failed"
        except Exception as exc:
            incident = new_incident_id()
            log.exception(
                "node %s failed unexpectedly (incident %s): %s",
                command.msg_id,
                incident,
                type(exc).__name__,
            )
            text = NODE_INTERNAL_ERROR.render(language, incident=incident)
            return self._failure(command, text, _ms(started)), "failed"
        success = NodeRunResult.succeeded(
            command.execution_id, command.run_key, command.attempt, result, _ms(started)
        )
        return success, "ok"

    async def _execute(
        self, kind: NodeKind, config: NodeData, command: NodeRunCommand, language: Language
    ) -> NodeResult:
        context = command.context()
        control = kind.control_runner(command.data)
        if control is not None:  # a control node, sent here because inline runs are off
            # In a thread: a slow regex or a huge template must not stall other nodes.
            return await asyncio.to_thread(control, config, context)
        if kind.worker is None:
            raise NodeRunError(NOT_SUPPORTED_YET, type=command.node_type)
        attempt = NodeAttempt(
            context,
            self._services,
            self._chunk_sink(command),
            language,
            command.owner_id,
            command.token_budget,
            self._settings.max_agent_iterations,
        )
        return await kind.worker(config, attempt)

    def _chunk_sink(self, command: NodeRunCommand) -> ChunkSink:
        subject = live_subject(command.execution_id)
        sequence = 0

        async def emit(text: str) -> None:
            nonlocal sequence
            sequence += 1
            message = {
                "type": "llm_chunk",
                "data": {
                    "node_id": command.node_id,
                    "run_key": command.run_key,
                    "attempt": command.attempt,
                    "seq": sequence,
                    "text": text,
                },
            }
            # Best effort: a viewer missing a chunk still gets the whole text with the result.
            with contextlib.suppress(BusUnavailable, Exception):
                await self._bus.nc.publish(subject, json.dumps(message).encode())

        return emit

    @staticmethod
    def _language(command: NodeRunCommand) -> Language:
        return "en" if command.language == "en" else "zh"

    @staticmethod
    def _failure(
        command: NodeRunCommand,
        error: str,
        duration_ms: int,
        retryable: bool = False,
        logs: Sequence[tuple[str, str]] = (),
    ) -> NodeRunResult:
        return NodeRunResult.failed(
            command.execution_id,
            command.run_key,
            command.attempt,
            error,
            duration_ms,
            retryable=retryable,
            logs=logs,
        )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
