"""A stateless node runner: pulls `cmd.node.run`, runs the node, publishes the result, acks.

Killed mid-run, it loses nothing: the unacked command is redelivered to another worker and
the result carries the same message id, so the orchestrator applies it once. While a node
runs, the worker tells JetStream it is still working (`in_progress`) so a long LLM call is
not handed to a second worker. A command delivered `node_max_deliveries` times without a
result (every worker that took it died) fails its node instead of circling forever.
`python -m services.executor.worker` runs one; scale by running more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Sequence

import httpx
from nats.aio.msg import Msg
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError as PydanticValidationError

from services.executor.datasources_client import DataSourcesClient
from services.executor.llm.client import ChatClient, ResponseLimits
from services.executor.messages import (
    NODE_INTERNAL_ERROR,
    NOT_SUPPORTED_YET,
    NodeRunCommand,
    NodeRunResult,
    new_incident_id,
)
from services.executor.metrics import NODE_RUN_SECONDS, NODE_RUNS
from services.executor.runners.agent import run_agent
from services.executor.runners.builtin import (
    BAD_CONFIG,
    BUILTIN_RUNNERS,
    NodeResult,
    NodeRunError,
    run_builtin,
)
from services.executor.runners.context import ChunkSink, NodeServices
from services.executor.runners.data_source import run_data_source_query
from services.executor.runners.llm import run_llm, within_budget
from services.executor.settings import ExecutorSettings, WorkerSettings
from services.executor.worker_http import serve_worker_http, worker_health
from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import (
    NODE_RUN_SUBJECT,
    NODE_RUNS_STREAM,
    NODE_WORKERS_DURABLE,
    node_result_subject,
)
from shared.i18n import Language, LocalizedError, Message
from shared.logging import configure_logging
from shared.security.grants import QueryGrants
from shared.settings_loading import load_settings
from shared.tracing import context_from, tracer
from shared.workflow.nodes import AgentData, LLMData, TransformData, parse_node_data

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


def capped(config: AgentData, max_iterations: int) -> AgentData:
    """The agent's config within the platform's cap on model turns."""
    if config.max_iterations <= max_iterations:
        return config
    return config.model_copy(update={"max_iterations": max_iterations})


def node_timeout(command: NodeRunCommand) -> float:
    try:
        return float(getattr(parse_node_data(command.node_type, command.data), "timeout", 30.0))
    except Exception:
        return 30.0


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
            subject=node_result_subject(result.execution_id),
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
        timeout = node_timeout(command)
        try:
            result = await asyncio.wait_for(self._execute(command, language), timeout)
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

    async def _execute(self, command: NodeRunCommand, language: Language) -> NodeResult:
        context = command.context()
        if command.node_type in BUILTIN_RUNNERS and command.data.get("mode") != "data_source":
            # In a thread: a slow regex or a huge template must not stall other nodes.
            return await asyncio.to_thread(run_builtin, command.node_type, command.data, context)
        try:
            config = parse_node_data(command.node_type, command.data)
        except PydanticValidationError as exc:
            raise NodeRunError(BAD_CONFIG, detail=str(exc.errors()[0]["msg"])) from exc
        if isinstance(config, TransformData):  # the data_source mode: the rest are built in
            return await run_data_source_query(config, context, self._services, command.owner_id)
        emit = self._chunk_sink(command)
        if isinstance(config, LLMData):
            config = within_budget(config, command.token_budget)
            return await run_llm(config, context, self._services, emit)
        if isinstance(config, AgentData):
            config = capped(config, self._settings.max_agent_iterations)
            config = within_budget(config, command.token_budget)
            return await run_agent(
                config,
                context,
                self._services,
                emit,
                language,
                command.owner_id,
                token_budget=command.token_budget,
            )
        raise NodeRunError(NOT_SUPPORTED_YET, type=command.node_type)

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


async def main() -> None:
    settings = load_settings(WorkerSettings, "agentflow-worker")
    configure_logging(settings, service="worker")
    bus = JetStreamBus(settings, name="agentflow-worker")
    async with httpx.AsyncClient(follow_redirects=False) as http:
        chat = ChatClient(
            http,
            max_retries=settings.llm_max_retries,
            backoff_s=settings.llm_backoff_s,
            max_backoff_s=settings.llm_max_backoff_s,
            limits=ResponseLimits(
                max_bytes=settings.llm_max_response_bytes,
                max_text_chars=settings.llm_max_text_chars,
                max_tool_argument_chars=settings.llm_max_tool_argument_chars,
                max_tool_calls=settings.llm_max_tool_calls,
            ),
        )
        services = NodeServices(
            http=http,
            chat=chat,
            outbound=settings.outbound_policy(),
            environ=dict(os.environ),
            data_sources=DataSourcesClient(http, settings.datasources_url, QueryGrants(settings)),
        )
        health = worker_health(bus)
        if settings.worker_metrics_port:
            serve_worker_http(settings.worker_metrics_host, settings.worker_metrics_port, health)
        worker = Worker(bus, settings, services)
        worker.consumer.start()
        bus.start()
        health.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started; waiting for node runs")
        await stop.wait()
        # Graceful: take nothing new; finish what is in hand within the grace period, then
        # hand the rest back so another worker runs it now (not after the ack wait).
        log.info(
            "stopping: finishing nodes in hand for up to %gs", settings.worker_shutdown_grace_s
        )
        health.serving = False
        await worker.consumer.stop(grace_s=settings.worker_shutdown_grace_s)
        await health.stop()
        await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
