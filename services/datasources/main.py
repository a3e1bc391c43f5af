"""Composition root of the data sources service."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.datasources import api
from services.datasources.application import DataSourcesApplication
from services.datasources.connectors import ConnectorPool, ConnectorSettings
from services.datasources.integration import to_integration_event
from services.datasources.limits import DataSourceLimits
from services.datasources.readmodel import DataSourceList
from services.datasources.settings import DataSourcesSettings
from shared.logging import configure_logging
from shared.readmodel import read_model_engine, read_model_metadata
from shared.runtime import ServiceRuntime
from shared.security.grants import QueryGrants
from shared.security.tokens import TokenService
from shared.web.app import event_sourced_app
from shared.web.history import history_router


def connector_settings(settings: DataSourcesSettings) -> ConnectorSettings:
    return ConnectorSettings(
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_s=settings.statement_timeout_s,
        max_rows=settings.max_rows,
        pool_max_size=settings.pool_max_size,
        outbound=settings.outbound_policy(),
        json_dir=settings.json_directory,
    )


def create_app(settings: DataSourcesSettings | None = None) -> FastAPI:
    settings = settings or DataSourcesSettings()
    configure_logging(settings, service="datasources")
    application = DataSourcesApplication(settings)
    engine = read_model_engine(settings)
    listing = DataSourceList(application, engine, read_model_metadata(settings))
    runtime = ServiceRuntime(application, to_integration_event, source="datasources")
    runtime.add_projection(listing.projection, poll_s=settings.projection_poll_s)
    connectors = ConnectorPool(connector_settings(settings))

    async def create_tables() -> None:
        await asyncio.to_thread(listing.projection.create_tables)

    async def dispose() -> None:
        await asyncio.to_thread(engine.dispose)

    return event_sourced_app(
        service="datasources",
        title="Agentflow data sources service",
        description="MySQL, PostgreSQL, HTTP API and JSON data sources: tests and safe queries.",
        runtime=runtime,
        routers=[
            api.router,
            history_router(
                prefix="/api/v1/data-sources",
                tag="数据源 data sources",
                application_attr="data_sources",
                aggregate_type="DataSource",
            ),
        ],
        state={
            "settings": settings,
            "data_sources": application,
            "data_source_list": listing,
            "connectors": connectors,
            "data_source_limits": DataSourceLimits(settings),
            "tokens": TokenService(settings),
            "query_grants": QueryGrants(settings),
        },
        on_start=[create_tables],
        on_stop=[connectors.close, dispose],
    )
