"""Dependency aliases for the workflows routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from services.workflows.application import Actor, WorkflowNotFound, WorkflowsApplication
from services.workflows.readmodel import WorkflowList
from shared.security.deps import CurrentPrincipal


async def _workflows(request: Request) -> WorkflowsApplication:
    app = request.app.state.workflows
    assert isinstance(app, WorkflowsApplication)
    return app


async def _workflow_list(request: Request) -> WorkflowList:
    listing = request.app.state.workflow_list
    assert isinstance(listing, WorkflowList)
    return listing


async def _actor(principal: CurrentPrincipal) -> Actor:
    return Actor(principal.user_id, principal.username, principal.is_admin)


async def _workflow_id(workflow_id: str) -> UUID:
    # A malformed id names no workflow: 404, the same as an unknown one.
    try:
        return UUID(workflow_id)
    except ValueError:
        raise WorkflowNotFound from None


Workflows = Annotated[WorkflowsApplication, Depends(_workflows)]
Listing = Annotated[WorkflowList, Depends(_workflow_list)]
CurrentActor = Annotated[Actor, Depends(_actor)]
WorkflowId = Annotated[UUID, Depends(_workflow_id)]
