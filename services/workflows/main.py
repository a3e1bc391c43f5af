"""Composition root of the workflows service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.workflows import api
from services.workflows.application import WorkflowsApplication
from services.workflows.integration import to_integration_event
from services.workflows.readmodel import WorkflowList
from services.workflows.settings import WorkflowsSettings
from shared.logging import configure_logging
from shared.readmodel import read_model_engine, read_model_metadata
from shared.runtime import ServiceRuntime
from shared.security.tokens import TokenService
from shared.web.app import build_app


def create_app(settings: WorkflowsSettings | None = None) -> FastAPI:
    settings = settings or WorkflowsSettings()
    configure_logging(settings, service="workflows")
    application = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    listing = WorkflowList(application, engine, read_model_metadata(settings))
    runtime = ServiceRuntime(application, to_integration_event, source="workflows")
    runtime.add_projection(listing.projection, poll_s=settings.projection_poll_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(listing.projection.create_tables)
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()
            await asyncio.to_thread(engine.dispose)

    app = build_app(
        service="workflows",
        title="Agentflow workflows service",
        description="Workflow definitions, versions, templates, import and export.",
        readiness=runtime.readiness(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.workflows = application
    app.state.workflow_list = listing
    app.state.tokens = TokenService(settings)
    app.state.runtime = runtime
    app.include_router(api.router)
    return app
