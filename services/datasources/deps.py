"""Dependency aliases for the data sources routes."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from services.datasources.application import Actor, DataSourceNotFound, DataSourcesApplication
from services.datasources.connectors import ConnectorPool
from services.datasources.readmodel import DataSourceList
from shared.security.deps import BearerToken, CurrentPrincipal, token_service
from shared.security.grants import QueryGrants
from shared.security.tokens import InvalidToken, Principal


async def _sources(request: Request) -> DataSourcesApplication:
    app = request.app.state.data_sources
    assert isinstance(app, DataSourcesApplication)
    return app


async def _listing(request: Request) -> DataSourceList:
    listing = request.app.state.data_source_list
    assert isinstance(listing, DataSourceList)
    return listing


async def _connectors(request: Request) -> ConnectorPool:
    pool = request.app.state.connectors
    assert isinstance(pool, ConnectorPool)
    return pool


def _actor_of(principal: Principal) -> Actor:
    return Actor(principal.user_id, principal.is_admin)


async def _actor(principal: CurrentPrincipal) -> Actor:
    return _actor_of(principal)


async def _query_actor(request: Request, token: BearerToken) -> Actor:
    """Who runs a query: a signed-in user, or a worker with a query grant for a workflow's
    owner (the only thing a grant is good for; the gateway does not accept one)."""
    try:
        return _actor_of(token_service(request).verify(token))
    except InvalidToken:
        grants = request.app.state.query_grants
        assert isinstance(grants, QueryGrants)
        return Actor(grants.verify(token), False)


async def _source_id(data_source_id: str) -> UUID:
    # A malformed id names no data source: 404, the same as an unknown one.
    try:
        return UUID(data_source_id)
    except ValueError:
        raise DataSourceNotFound from None


DataSources = Annotated[DataSourcesApplication, Depends(_sources)]
Listing = Annotated[DataSourceList, Depends(_listing)]
Connectors = Annotated[ConnectorPool, Depends(_connectors)]
CurrentActor = Annotated[Actor, Depends(_actor)]
QueryActor = Annotated[Actor, Depends(_query_actor)]
SourceId = Annotated[UUID, Depends(_source_id)]
