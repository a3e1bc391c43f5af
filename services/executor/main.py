"""Composition root of the executor api process (orchestrator included)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.executor import api, logs_api
from services.executor.application import ExecutorApplication
from services.executor.integration import to_integration_event
from services.executor.orchestrator import Orchestrator
from services.executor.readmodel import ExecutionList
from services.executor.settings import ExecutorSettings
from shared.logging import configure_logging
from shared.readmodel import read_model_engine, read_model_metadata
from shared.runtime import ServiceRuntime
from shared.security.tokens import TokenService
from shared.web.app import build_app


def create_app(settings: ExecutorSettings | None = None) -> FastAPI:
    settings = settings or ExecutorSettings()
    configure_logging(settings, service="executor")
    application = ExecutorApplication(settings)
    runtime = ServiceRuntime(application, to_integration_event, source="executor")
    orchestrator = Orchestrator(application, runtime.bus)
    engine = read_model_engine(settings)
    executions = ExecutionList(application, engine, read_model_metadata(settings))
    runtime.add_projection(executions.projection)

    async def carry_on() -> None:
        await runtime.bus.wait_ready()
        await orchestrator.recover(await asyncio.to_thread(executions.unfinished))

    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(executions.projection.create_tables)
        orchestrator.start()
        await runtime.start()
        recovery = asyncio.create_task(carry_on())
        try:
            yield
        finally:
            recovery.cancel()
            await orchestrator.stop()
            await runtime.stop()
            await http.aclose()
            await asyncio.to_thread(engine.dispose)

    app = build_app(
        service="executor",
        title="Agentflow executor",
        description="Executions: durable runs of workflows over JetStream.",
        readiness=runtime.readiness(),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.executor = application
    app.state.orchestrator = orchestrator
    app.state.executions = executions
    app.state.http = http
    app.state.tokens = TokenService(settings)
    app.include_router(api.router)
    app.include_router(logs_api.router)
    return app
