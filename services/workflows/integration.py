"""Which workflow domain events are published, and as what: facts, not full content."""

from __future__ import annotations

from typing import Any

from shared.bus.envelope import IntegrationEvent

_TYPES = {
    "Workflow.Created": "WorkflowCreated",
    "Workflow.ContentChanged": "WorkflowUpdated",
    "Workflow.RolledBack": "WorkflowRolledBack",
    "Workflow.StatusChanged": "WorkflowStatusChanged",
    "Workflow.Deleted": "WorkflowDeleted",
}


def to_integration_event(domain_event: Any) -> IntegrationEvent | None:
    kind = _TYPES.get(type(domain_event).__qualname__)
    if kind is None:
        return None
    data: dict[str, Any] = {
        "workflow_id": str(domain_event.originator_id),
        "author": dict(getattr(domain_event, "author", {})),
    }
    if kind == "WorkflowCreated":
        data["owner_id"] = str(domain_event.owner_id)
        data["name"] = domain_event.content["name"]
        data["origin"] = domain_event.origin
    elif kind in ("WorkflowUpdated", "WorkflowRolledBack"):
        data["changed"] = sorted(domain_event.changes)
        data["summary"] = domain_event.summary
        if kind == "WorkflowRolledBack":
            data["to_version"] = domain_event.to_version
    elif kind == "WorkflowStatusChanged":
        data["status"] = domain_event.status
    return IntegrationEvent(type=kind, aggregate="workflow", data=data)
