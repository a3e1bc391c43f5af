"""An aggregate's history for audit: every stored event as plain JSON, and its state at any
version. Password hashes and encrypted secrets are redacted; nothing else is hidden."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application

REDACTED: Final = "[redacted]"
# Fields whose values never leave the store, even to an admin or an operator.
SECRET_FIELDS: Final = frozenset({"password_hash", "secrets"})
_EVENT_FIELDS: Final = frozenset({"originator_id", "originator_version", "timestamp"})


def json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _redacted(fields: dict[str, Any]) -> dict[str, Any]:
    shown = {}
    for name, value in fields.items():
        shown[name] = REDACTED if name in SECRET_FIELDS and value else json_safe(value)
    return shown


def event_record(domain_event: Any) -> dict[str, Any]:
    """One stored event: which aggregate, which version, what happened, when, with what."""
    fields = dict(vars(domain_event)) if not dataclasses.is_dataclass(domain_event) else {
        f.name: getattr(domain_event, f.name) for f in dataclasses.fields(domain_event)
    }  # fmt: skip
    data = {k: v for k, v in fields.items() if k not in _EVENT_FIELDS}
    return {
        "aggregate_id": str(domain_event.originator_id),
        "version": domain_event.originator_version,
        "type": type(domain_event).__qualname__,
        "timestamp": domain_event.timestamp.isoformat(),
        "data": _redacted(data),
    }


class AggregateUnknown(LookupError):
    pass


def aggregate_history(app: Application[UUID], aggregate_id: UUID) -> list[dict[str, Any]]:
    records = [event_record(e) for e in app.events.get(aggregate_id)]
    if not records:
        raise AggregateUnknown(str(aggregate_id))
    return records


def state_at(app: Application[UUID], aggregate_id: UUID, version: int | None) -> dict[str, Any]:
    """The aggregate as it was after `version` (None: now), its fields as JSON."""
    try:
        aggregate: Any = app.repository.get(aggregate_id, version=version)
    except AggregateNotFoundError:
        raise AggregateUnknown(str(aggregate_id)) from None
    fields = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    return {
        "aggregate_id": str(aggregate_id),
        "type": type(aggregate).__qualname__,
        "version": aggregate.version,
        "state": _redacted(fields),
    }
