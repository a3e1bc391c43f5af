"""Composition root of the executor api process (orchestrator included)."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from services.executor import api, logs_api
from services.executor.application import ExecutorApplication
from services.executor.integration import to_integration_event
from services.executor.limits import ExecutionLimits
from services.executor.orchestrator import Orchestrator
from services.executor.partitions import Partitioning
from services.executor.readmodel import ExecutionList
from services.executor.settings import ExecutorSettings
from services.executor.workflow_source import KeptWorkflows, WorkflowsOverHttp
from shared.logging import configure_logging
from shared.readmodel import read_model_engine, read_model_metadata
from shared.runtime import ServiceRuntime
from shared.security.tokens import TokenService
from shared.serve import INTERNAL_KEEPALIVE_S
from shared.web.app import event_sourced_app
from shared.web.history import history_router


def create_app(settings: ExecutorSettings | None = None) -> FastAPI:
    settings = settings or ExecutorSettings()
    configure_logging(settings, service="executor")
    application = ExecutorApplication(settings)
    runtime = ServiceRuntime(application, to_integration_event, source="executor")
    engine = read_model_engine(settings)
    executions = ExecutionList(application, engine, read_model_metadata(settings))
    orchestrator = Orchestrator(
        application,
        runtime.bus,
        inline=settings.inline_control_nodes,
        node_ack_wait_s=settings.node_ack_wait_s,
        max_run_s=settings.max_execution_seconds,
        overdue=executions.unfinished,
        max_loop_items=settings.max_loop_items,
        token_budget=settings.max_tokens_per_execution or None,
        max_node_runs=settings.max_node_runs_per_execution,
        # Replicas share the runs by partition (ADR 0009).
        partitioning=Partitioning.from_settings(settings),
        unfinished=executions.unfinished,
        pending=executions.pending,
    )
    runtime.add_projection(executions.projection)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(10.0, connect=2.0),
        limits=httpx.Limits(max_keepalive_connections=64, keepalive_expiry=INTERNAL_KEEPALIVE_S),
    )
    workflows = WorkflowsOverHttp(http, settings.workflows_url)
    kept = KeptWorkflows(
        workflows,
        runtime.bus,
        max_entries=settings.workflow_cache_entries,
        max_age_s=settings.workflow_cache_max_age_s,
    )
    limits = ExecutionLimits(settings, executions)
    application.attach(
        workflows=kept if settings.workflow_cache_entries else workflows,
        limits=limits,
        runs=orchestrator,
    )

    async def carry_on() -> None:
        await runtime.bus.wait_ready()
        await orchestrator.recover(await asyncio.to_thread(executions.unfinished))

    recovery: list[asyncio.Task[None]] = []

    async def start() -> None:
        await asyncio.to_thread(executions.projection.create_tables)
        orchestrator.start()
        recovery.append(asyncio.create_task(carry_on()))

    async def stop_orchestrating() -> None:
        for task in recovery:
            task.cancel()
        await orchestrator.stop()
        await kept.close()

    async def release() -> None:
        await http.aclose()
        await asyncio.to_thread(engine.dispose)

    return event_sourced_app(
        service="executor",
        title="Agentflow executor",
        description="Executions: durable runs of workflows over JetStream.",
        runtime=runtime,
        routers=[
            api.router,
            logs_api.router,
            history_router(
                prefix="/api/v1/executions",
                tag="执行 executions",
                application_attr="executor",
                aggregate_type="Execution",
            ),
        ],
        state={
            "settings": settings,
            "executor": application,
            "orchestrator": orchestrator,
            "executions": executions,
            "limits": limits,
            "tokens": TokenService(settings),
        },
        on_start=[start],
        before_stop=[stop_orchestrating],
        on_stop=[release],
    )
