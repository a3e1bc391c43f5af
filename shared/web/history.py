"""`GET <prefix>/{id}/history`: an aggregate's stored events and its state at a version, for
admins auditing what happened (the `agentflow-audit` tool reads the same from the store)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from shared.errors import Forbidden, NotFound
from shared.history import AggregateUnknown, aggregate_history, state_at
from shared.security.deps import CurrentPrincipal
from shared.web.deps import MAX_INT64
from shared.web.errors import error_responses


class StoredEvent(BaseModel):
    aggregate_id: str
    version: int
    type: str = Field(description="Aggregate.Event, e.g. Execution.NodeCompleted")
    timestamp: str
    data: dict[str, Any] = Field(description="The event's fields; secrets redacted.")


class AggregateState(BaseModel):
    aggregate_id: str
    type: str
    version: int
    state: dict[str, Any]


class HistoryOut(BaseModel):
    events: list[StoredEvent]
    state: AggregateState = Field(description="As of `at_version` (default: now).")


def history_router(
    *, prefix: str, tag: str, application_attr: str, aggregate_type: str
) -> APIRouter:
    router = APIRouter(prefix=prefix, tags=[tag])

    @router.get(
        "/{aggregate_id}/history",
        response_model=HistoryOut,
        responses=error_responses(401, 403, 404, 422),
        # The operationId: one per service, e.g. get_data_source_history for DataSource.
        name=f"get_{_snake_case(aggregate_type)}_history",
    )
    def history(
        aggregate_id: str,
        request: Request,
        principal: CurrentPrincipal,
        at_version: Annotated[
            int | None, Query(ge=1, le=MAX_INT64, description="State after this event")
        ] = None,
    ) -> HistoryOut:
        """Every stored event of one aggregate and its state at a version (admins only)."""
        if not principal.is_admin:
            raise Forbidden
        application = getattr(request.app.state, application_attr)
        try:
            events = aggregate_history(application, UUID(aggregate_id))
            state = state_at(application, UUID(aggregate_id), at_version)
        except (ValueError, AggregateUnknown):
            raise NotFound from None
        if state["type"] != aggregate_type:
            raise NotFound
        return HistoryOut.model_validate({"events": events, "state": state})

    return router


def _snake_case(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
