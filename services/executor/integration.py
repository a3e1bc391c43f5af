"""Which execution events are published, and as what: state changes, not node payloads,
except the outputs the live-update socket shows (services/gateway/live.py builds its
messages from these events; an output too large to travel is left out, and it reads it)."""

from __future__ import annotations

from typing import Any, Final

import pydantic_core

from services.executor.domain import NODE_FINISHED_LINE, NODE_STARTED_LINE
from shared.bus.envelope import IntegrationEvent

# An output travels with its event up to this size (JSON bytes), far below NATS's message
# limit (1 MiB) even with the envelope around it.
MAX_PUBLISHED_OUTPUT_BYTES: Final = 256 * 1024

_TYPES = {
    "Execution.Created": "ExecutionCreated",
    "Execution.Started": "ExecutionStarted",
    "Execution.NodeStarted": "NodeStarted",
    "Execution.NodeCompleted": "NodeCompleted",
    "Execution.NodeFailed": "NodeFailed",
    "Execution.NodeSkipped": "NodeSkipped",
    "Execution.Completed": "ExecutionCompleted",
    "Execution.Failed": "ExecutionFailed",
    "Execution.Cancelled": "ExecutionCancelled",
    "Execution.Resumed": "ExecutionResumed",
    "Execution.LogRecorded": "ExecutionLogRecorded",
    "Execution.IterationStarted": "IterationStarted",
    "Execution.IterationFinished": "IterationFinished",
}


def to_integration_event(domain_event: Any) -> IntegrationEvent | None:
    kind = _TYPES.get(type(domain_event).__qualname__)
    if kind is None:
        return None
    data: dict[str, Any] = {"execution_id": str(domain_event.originator_id)}
    if kind == "ExecutionCreated":
        data.update(
            owner_id=str(domain_event.owner_id),
            workflow_id=str(domain_event.workflow_id),
            workflow_version=domain_event.workflow_version,
            # What progress counts (the share of these finished).
            top_level_nodes=[
                node["id"]
                for node in domain_event.graph.get("nodes", [])
                if not node.get("parentId")
            ],
        )
    for name in ("run_key", "node_id", "node_type", "attempt", "branch", "duration_ms"):
        if hasattr(domain_event, name):
            data[name] = getattr(domain_event, name)
    if kind == "NodeCompleted":
        _with_output(data, "output", domain_event.output)
    if kind == "ExecutionCompleted":
        _with_output(data, "output_data", domain_event.output_data)
    if kind == "NodeFailed":
        data.update(error=domain_event.error, final=domain_event.final)
    if kind == "ExecutionFailed":
        data["error"] = domain_event.error
    if getattr(domain_event, "log_line", False):
        # The event stands for a log line too (domain.py): the socket passes it on as one.
        line = NODE_STARTED_LINE if kind == "NodeStarted" else NODE_FINISHED_LINE
        data["log"] = {"level": "info", "message": line}
    if kind == "ExecutionLogRecorded":
        data.update(level=domain_event.level, message=domain_event.message)
    if kind.startswith("Iteration"):
        data["index"] = domain_event.index
    if kind == "IterationFinished":
        data.update(ok=domain_event.ok, error=domain_event.error)
    return IntegrationEvent(type=kind, aggregate="execution", data=data)


def _with_output(data: dict[str, Any], name: str, value: Any) -> None:
    try:
        size = len(pydantic_core.to_json(value))
    except pydantic_core.PydanticSerializationError:
        return
    if size <= MAX_PUBLISHED_OUTPUT_BYTES:
        data[name] = value
