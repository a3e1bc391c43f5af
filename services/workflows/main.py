"""Composition root of the workflows service."""

from __future__ import annotations

import asyncio

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
from shared.web.app import event_sourced_app
from shared.web.history import history_router
from shared.web.published_writes import AnswerWritesWhenPublished


def create_app(settings: WorkflowsSettings | None = None) -> FastAPI:
    settings = settings or WorkflowsSettings()
    configure_logging(settings, service="workflows")
    application = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    listing = WorkflowList(application, engine, read_model_metadata(settings))
    application.count_owned_with(listing.count_owned)
    runtime = ServiceRuntime(application, to_integration_event, source="workflows")
    runtime.add_projection(listing.projection, poll_s=settings.projection_poll_s)

    async def create_tables() -> None:
        await asyncio.to_thread(listing.projection.create_tables)

    async def dispose() -> None:
        await asyncio.to_thread(engine.dispose)

    app = event_sourced_app(
        service="workflows",
        title="Agentflow workflows service",
        description="Workflow definitions, versions, templates, import and export.",
        runtime=runtime,
        routers=[
            api.router,
            history_router(
                prefix="/api/v1/workflows",
                tag="工作流 workflows",
                application_attr="workflows",
                aggregate_type="Workflow",
            ),
        ],
        state={
            "settings": settings,
            "workflows": application,
            "workflow_list": listing,
            "tokens": TokenService(settings),
        },
        on_start=[create_tables],
        on_stop=[dispose],
    )
    # The executor keeps current versions from these events: a saved workflow then runs as
    # saved (services/executor/workflow_source.py).
    app.add_middleware(
        AnswerWritesWhenPublished,
        relay=runtime.relay,
        timeout_s=settings.publish_before_answer_s,
    )
    return app
