"""A stateless node runner: pulls `cmd.node.run`, runs the node, publishes the result, acks.

Killed mid-run, it loses nothing: the unacked command is redelivered to another worker and
the result carries the same message id, so the orchestrator applies it once.
`python -m services.executor.worker` runs one; scale by running more.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from nats.aio.msg import Msg

from services.executor.messages import NOT_SUPPORTED_YET, NodeRunCommand, NodeRunResult
from services.executor.runners.builtin import BUILTIN_RUNNERS, NodeRunError, run_builtin
from services.executor.settings import ExecutorSettings
from shared.bus.client import JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import NODE_RUN_SUBJECT, NODE_RUNS_STREAM, node_result_subject
from shared.i18n import Language
from shared.logging import configure_logging
from shared.workflow.nodes import parse_node_data
from shared.workflow.references import RuntimeContext

log = logging.getLogger("agentflow.worker")

WORKERS_DURABLE = "node-workers"


def run_command(command: NodeRunCommand) -> NodeRunResult:
    """Run one node attempt; every failure becomes a result, never an exception."""
    started = time.perf_counter()
    language: Language = "en" if command.language == "en" else "zh"
    context = RuntimeContext(
        input_data=command.input_data,
        node_types=command.node_types,
        records=command.records,
        upstream=tuple(command.upstream),
    )
    try:
        if command.node_type not in BUILTIN_RUNNERS:
            raise NodeRunError(NOT_SUPPORTED_YET, type=command.node_type)
        result = run_builtin(command.node_type, command.data, context)
    except NodeRunError as exc:
        return NodeRunResult(
            execution_id=command.execution_id,
            run_key=command.run_key,
            attempt=command.attempt,
            ok=False,
            error=exc.render(language),
            retryable=exc.retryable,
            duration_ms=_ms(started),
        )
    return NodeRunResult(
        execution_id=command.execution_id,
        run_key=command.run_key,
        attempt=command.attempt,
        ok=True,
        output=result.output,
        branch=result.branch,
        duration_ms=_ms(started),
        logs=list(result.logs),
    )


def node_timeout(command: NodeRunCommand) -> float:
    try:
        return float(getattr(parse_node_data(command.node_type, command.data), "timeout", 30.0))
    except Exception:
        return 30.0


class Worker:
    def __init__(self, bus: JetStreamBus) -> None:
        self._bus = bus
        self.consumer = PullConsumer(
            bus,
            stream=NODE_RUNS_STREAM,
            durable=WORKERS_DURABLE,
            subject=NODE_RUN_SUBJECT,
            handler=self.handle,
            batch=4,
        )

    async def handle(self, message: Msg) -> None:
        command = NodeRunCommand.model_validate_json(message.data)
        timeout = node_timeout(command)
        try:
            result = await asyncio.wait_for(asyncio.to_thread(run_command, command), timeout)
        except TimeoutError:
            result = NodeRunResult(
                execution_id=command.execution_id,
                run_key=command.run_key,
                attempt=command.attempt,
                ok=False,
                error=f"timed out after {timeout:g}s",
                retryable=True,
                duration_ms=int(timeout * 1000),
            )
        # Publish before the ack (the consumer acks when this returns): a crash in between
        # re-runs the node and re-publishes a result that JetStream deduplicates.
        await self._bus.publish_batch(
            [
                OutgoingMessage(
                    subject=node_result_subject(command.execution_id),
                    payload=result.model_dump_json().encode(),
                    msg_id=result.msg_id,
                )
            ]
        )


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


async def main() -> None:
    settings = ExecutorSettings()
    configure_logging(settings, service="worker")
    bus = JetStreamBus(settings, name="agentflow-worker")
    worker = Worker(bus)
    worker.consumer.start()
    bus.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker started; waiting for node runs")
    await stop.wait()
    await worker.consumer.stop()
    await bus.close()


if __name__ == "__main__":
    asyncio.run(main())
