"""Dependency aliases for the executor's routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from services.executor.application import Actor, ExecutionNotFound, ExecutorApplication
from services.executor.readmodel import ExecutionList
from shared.security.deps import BearerToken, CurrentPrincipal


async def _executor(request: Request) -> ExecutorApplication:
    app = request.app.state.executor
    assert isinstance(app, ExecutorApplication)
    return app


async def _executions(request: Request) -> ExecutionList:
    listing = request.app.state.executions
    assert isinstance(listing, ExecutionList)
    return listing


async def _actor(principal: CurrentPrincipal, token: BearerToken) -> Actor:
    return Actor(principal.user_id, principal.username, principal.is_admin, token)


async def _execution_id(execution_id: str) -> UUID:
    # A malformed id names no execution: 404, the same as an unknown one.
    try:
        return UUID(execution_id)
    except ValueError:
        raise ExecutionNotFound from None


Executor = Annotated[ExecutorApplication, Depends(_executor)]
Listing = Annotated[ExecutionList, Depends(_executions)]
CurrentActor = Annotated[Actor, Depends(_actor)]
ExecutionId = Annotated[UUID, Depends(_execution_id)]
