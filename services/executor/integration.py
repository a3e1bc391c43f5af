"""Which execution events are published, and as what: state changes, not node payloads."""

from __future__ import annotations

from typing import Any

from shared.bus.envelope import IntegrationEvent

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
        )
    for name in ("run_key", "node_id", "node_type", "attempt", "branch", "duration_ms"):
        if hasattr(domain_event, name):
            data[name] = getattr(domain_event, name)
    if kind == "NodeFailed":
        data.update(error=domain_event.error, final=domain_event.final)
    if kind == "ExecutionFailed":
        data["error"] = domain_event.error
    if kind == "ExecutionLogRecorded":
        data.update(level=domain_event.level, message=domain_event.message)
    if kind.startswith("Iteration"):
        data["index"] = domain_event.index
    if kind == "IterationFinished":
        data.update(ok=domain_event.ok, error=domain_event.error)
    return IntegrationEvent(type=kind, aggregate="execution", data=data)
