"""The JSON envelope of every integration event on the `EVENTS` stream (format version 1).

```json
{"envelope_version": 1, "id": "<uuid5 of msg id>", "type": "UserRegistered", "source": "auth",
 "aggregate": "user", "aggregate_id": "<uuid>", "version": 1,
 "occurred_at": "2026-01-01T00:00:00+00:00", "data": {...}}
```

Integration events are a published contract, kept apart from the internal domain events they
are translated from: fields are added, never renamed or removed, within one envelope version.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

_ID_NAMESPACE = uuid.UUID("6f1d3b0e-5c8a-4d3e-9a63-2f8f2b0c7a11")


class IntegrationEvent(BaseModel):
    """What a service chooses to publish about one of its stored domain events."""

    type: str
    aggregate: str
    data: dict[str, Any] = Field(default_factory=dict)


class EventEnvelope(BaseModel):
    envelope_version: Literal[1] = 1
    id: str
    type: str
    source: str
    aggregate: str
    aggregate_id: str
    version: int
    occurred_at: datetime
    data: dict[str, Any]

    @property
    def msg_id(self) -> str:
        return msg_id(self.aggregate_id, self.version)

    @classmethod
    def wrap(
        cls,
        event: IntegrationEvent,
        *,
        source: str,
        aggregate_id: str,
        version: int,
        occurred_at: datetime,
    ) -> EventEnvelope:
        return cls(
            id=str(uuid.uuid5(_ID_NAMESPACE, msg_id(aggregate_id, version))),
            type=event.type,
            source=source,
            aggregate=event.aggregate,
            aggregate_id=aggregate_id,
            version=version,
            occurred_at=occurred_at,
            data=event.data,
        )


def msg_id(aggregate_id: str, version: int) -> str:
    """The `Nats-Msg-Id` JetStream deduplicates on: one stored event, one id."""
    return f"{aggregate_id}:{version}"
