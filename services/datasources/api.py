"""Routes of `/api/v1/data-sources`. Registry routes are sync (the event store is); testing
and querying are async, since they wait on the data source itself."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from services.datasources import messages
from services.datasources.application import Connection, DataSourceView
from services.datasources.connectors import Connector, ConnectorError, ConnectorPool, QueryResult
from services.datasources.deps import (
    Connectors,
    CurrentActor,
    DataSources,
    Listing,
    QueryActor,
    SourceId,
)
from services.datasources.limits import Limits
from services.datasources.metrics import QUERIES, QUERY_SECONDS, TESTS
from services.datasources.readmodel import ListQuery
from services.datasources.schemas import (
    DataSourceCreate,
    DataSourceOut,
    DataSourceUpdate,
    MessageOut,
    QueryIn,
    QueryOut,
    SourceStatus,
    SourceType,
    TestOut,
)
from shared.errors import BadGateway, BadRequest, GatewayTimeout
from shared.i18n import Language
from shared.web.deps import RequestLanguage, Skip
from shared.web.errors import error_responses

router = APIRouter(prefix="/api/v1/data-sources", tags=["数据源 data sources"])

FOUND = error_responses(401, 404)
LIMITED = error_responses(401, 404, 429)


class QueryRefused(BadRequest):
    default_code = "QUERY_REFUSED"
    default_message = messages.QUERY_REFUSED


class QueryFailed(BadRequest):
    default_code = "QUERY_FAILED"
    default_message = messages.QUERY_FAILED


class QueryTimeout(GatewayTimeout):
    default_code = "QUERY_TIMEOUT"
    default_message = messages.QUERY_TIMEOUT


class SourceUnreachable(BadGateway):
    default_code = "DATA_SOURCE_UNAVAILABLE"
    default_message = messages.SOURCE_UNREACHABLE


class SourceAuthFailed(BadRequest):
    """The source refused the credentials in its config: the user's to fix, not a fault of
    the source (which answered), so a 4xx that is not worth retrying."""

    default_code = "DATA_SOURCE_AUTH_FAILED"
    default_message = messages.SOURCE_AUTH_FAILED


def _out(view: DataSourceView) -> DataSourceOut:
    return DataSourceOut.model_validate(view, from_attributes=True)


@router.get("", response_model=list[DataSourceOut], responses=error_responses(401, 422))
def list_data_sources(
    actor: CurrentActor,
    listing: Listing,
    skip: Skip = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="每页记录数,最大100")] = 100,
    type: Annotated[SourceType | None, Query(description="按类型过滤")] = None,
    status: Annotated[SourceStatus | None, Query(description="按状态过滤")] = None,
) -> list[dict[str, Any]]:
    """Your data sources (an admin's: everyone's), newest first, secrets masked."""
    owner = None if actor.is_admin else actor.user_id
    query = ListQuery(owner, skip=skip, limit=limit, source_type=type, status=status)
    return listing.query(query)


@router.post(
    "",
    response_model=DataSourceOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 422, 429),
)
def create_data_source(
    body: DataSourceCreate,
    actor: CurrentActor,
    sources: DataSources,
    listing: Listing,
    limits: Limits,
) -> DataSourceOut:
    """Register a data source; its secrets are encrypted before they are stored. A user has at
    most `AGENTFLOW_MAX_DATA_SOURCES_PER_USER` of them (429 `QUOTA_EXCEEDED`)."""
    with limits.registering(actor.user_id, lambda: listing.count_owned(actor.user_id)):
        view = sources.register(actor, body.name, body.type, body.description, body.config)
    return _out(view)


@router.get("/{data_source_id}", response_model=DataSourceOut, responses=FOUND)
def get_data_source(
    actor: CurrentActor, sources: DataSources, source_id: SourceId
) -> DataSourceOut:
    """One data source, secrets masked."""
    return _out(sources.get(actor, source_id))


@router.put(
    "/{data_source_id}", response_model=DataSourceOut, responses=error_responses(401, 404, 422)
)
def update_data_source(
    body: DataSourceUpdate, actor: CurrentActor, sources: DataSources, source_id: SourceId
) -> DataSourceOut:
    """Change the name, description or part of the config; secrets not given are kept."""
    return _out(sources.update(actor, source_id, body.name, body.description, body.config))


@router.delete("/{data_source_id}", response_model=MessageOut, responses=FOUND)
def delete_data_source(
    actor: CurrentActor,
    sources: DataSources,
    connectors: Connectors,
    source_id: SourceId,
    language: RequestLanguage,
) -> MessageOut:
    """Delete a data source (its history stays in the store)."""
    sources.delete(actor, source_id)
    connectors.drop_soon(source_id)
    return MessageOut(message=messages.DATA_SOURCE_DELETED.render(language))


@router.post("/{data_source_id}/test", response_model=TestOut, responses=LIMITED)
async def test_data_source(
    actor: CurrentActor,
    sources: DataSources,
    connectors: Connectors,
    limits: Limits,
    source_id: SourceId,
    language: RequestLanguage,
) -> TestOut:
    """Try to connect; a failure is an answer with its reason, and the result is kept. At most
    `AGENTFLOW_MAX_DATA_SOURCE_TESTS_PER_MINUTE_PER_USER` a minute (429 with Retry-After)."""
    limits.count_test(actor.user_id)
    connection = await asyncio.to_thread(sources.connection, actor, source_id)
    connector = await _connector(connectors, connection)
    try:
        detail = await connector.test(language=language)
        ok, message, kind = True, f"{messages.TEST_OK.render(language)}:{detail}", None
    except ConnectorError as exc:
        ok, message, kind = False, exc.render(language), exc.kind
    TESTS.labels(connection.source_type, kind or "ok").inc()
    await asyncio.to_thread(sources.record_test, source_id, ok, message, kind)
    return TestOut(
        status="success" if ok else "failed",
        message=message,
        error_kind=kind,
        tested_at=datetime.now(UTC),
    )


@router.post(
    "/{data_source_id}/query",
    response_model=QueryOut,
    responses=error_responses(400, 401, 404, 422, 429, 502, 504),
)
async def query_data_source(
    body: QueryIn,
    actor: QueryActor,
    sources: DataSources,
    connectors: Connectors,
    limits: Limits,
    source_id: SourceId,
    language: RequestLanguage,
) -> QueryOut:
    """Run one read-only query; rows come back as JSON objects. At most
    `AGENTFLOW_MAX_DATA_SOURCE_QUERIES_PER_MINUTE_PER_USER` a minute (429 with Retry-After).

    Failures: 400 `QUERY_REFUSED` (not read-only), `QUERY_FAILED` (the query is wrong) or
    `DATA_SOURCE_AUTH_FAILED` (the source refused the credentials in its config); 502
    `DATA_SOURCE_UNAVAILABLE` (the source cannot be reached or failed); 504 `QUERY_TIMEOUT`."""
    limits.count_query(actor.user_id)
    connection = await asyncio.to_thread(sources.connection, actor, source_id)
    connector = await _connector(connectors, connection)
    limit = min(body.limit or connectors.settings.max_rows, connectors.settings.max_rows)
    started = time.perf_counter()
    try:
        result: QueryResult = await connector.query(body.query, body.parameters, max_rows=limit)
    except ConnectorError as exc:  # unsafe SQL included: kind "refused"
        QUERIES.labels(connection.source_type, exc.kind).inc()
        raise _query_error(exc, language) from exc
    finally:
        QUERY_SECONDS.labels(connection.source_type).observe(time.perf_counter() - started)
    QUERIES.labels(connection.source_type, "ok").inc()
    return QueryOut(
        data=result.rows, count=result.count, truncated=result.truncated, columns=result.columns
    )


async def _connector(connectors: ConnectorPool, connection: Connection) -> Connector:
    return await connectors.get(
        connection.source_id,
        connection.version,
        connection.source_type,
        connection.config,
        owner_id=connection.owner_id,
    )


def _query_error(exc: ConnectorError, language: Language) -> Exception:
    reason = exc.render(language)
    if exc.kind == "refused":
        return QueryRefused(reason=reason)
    if exc.kind in ("bad_query", "not_found"):
        return QueryFailed(reason=reason)
    if exc.kind == "timeout":
        return QueryTimeout(reason=reason)
    if exc.kind == "auth":
        return SourceAuthFailed(reason=reason)
    return SourceUnreachable(reason=reason)
