"""Which data source events are published, and as what: facts, never configs or secrets."""

from __future__ import annotations

from typing import Any

from shared.bus.envelope import IntegrationEvent

_TYPES = {
    "DataSource.Registered": "DataSourceRegistered",
    "DataSource.Updated": "DataSourceUpdated",
    "DataSource.Tested": "DataSourceTested",
    "DataSource.SecretsRotated": "DataSourceSecretsRotated",
    "DataSource.Deleted": "DataSourceDeleted",
}


def to_integration_event(domain_event: Any) -> IntegrationEvent | None:
    kind = _TYPES.get(type(domain_event).__qualname__)
    if kind is None:
        return None
    data: dict[str, Any] = {"data_source_id": str(domain_event.originator_id)}
    if kind == "DataSourceRegistered":
        data.update(
            owner_id=str(domain_event.owner_id),
            name=domain_event.name,
            type=domain_event.source_type,
        )
    elif kind == "DataSourceUpdated":
        data["changed"] = sorted(k for k in domain_event.changes if k not in ("secrets",))
    elif kind == "DataSourceTested":
        data.update(ok=domain_event.ok, error_kind=domain_event.kind)
    return IntegrationEvent(type=kind, aggregate="datasource", data=data)
