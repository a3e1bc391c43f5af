"""The skeleton every service's `create_app` starts from."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from shared.bus.client import JetStreamBus
from shared.runtime import ServiceRuntime
from shared.security.revocations import RevocationFeed
from shared.security.tokens import TokenService
from shared.web.errors import install_error_handlers
from shared.web.health import DependencyCheck, DependencyMonitor, Serving, health_router
from shared.web.json_body import JsonBodyGuard
from shared.web.middleware import RequestContextMiddleware
from shared.web.openapi import document_openapi, operation_id, package_version

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_app(
    *,
    service: str,
    title: str,
    description: str,
    dependencies: dict[str, DependencyCheck],
    lifespan: Lifespan | None = None,
    metrics_route: bool = True,
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with offline docs, the error shape, request ids, metrics and health
    (`metrics_route=False`: no `/metrics` on this app's listener). `dependencies` are
    checked in the background for `/diagnostics` and the gauge, never for readiness."""
    monitor = DependencyMonitor(service, dependencies)
    serving = Serving()
    app: FastAPI = FastAPIOffline(
        title=title,
        description=description,
        version=package_version(),
        # operationIds are the routes' names (`list_workflows`), for generated clients.
        generate_unique_id_function=operation_id,
        lifespan=_with_health(lifespan, monitor, serving),
        # Our middleware makes the one server span per request (shared/tracing.py), named by
        # route and carrying the request id; FastAPI's own would be a second, unlinked one.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        **kwargs,
    )
    install_error_handlers(app)
    document_openapi(app)
    app.add_middleware(JsonBodyGuard)  # inside the request context: refusals are counted
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router(monitor, serving, metrics=metrics_route))
    app.state.dependencies = monitor
    return app


def _with_health(
    lifespan: Lifespan | None, monitor: DependencyMonitor, serving: Serving
) -> Lifespan:
    """The app's own lifespan, then the dependency monitor; ready from the end of startup
    to the start of shutdown."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app) if lifespan is not None else nullcontext():
            monitor.start()
            serving.now = True
            try:
                yield
            finally:
                serving.now = False
                await monitor.stop()

    return run


Hook = Callable[[], Awaitable[None]]


def event_sourced_app(
    *,
    service: str,
    title: str,
    description: str,
    runtime: ServiceRuntime,
    routers: Sequence[APIRouter],
    state: dict[str, Any],
    on_start: Sequence[Hook] = (),
    before_stop: Sequence[Hook] = (),
    on_stop: Sequence[Hook] = (),
) -> FastAPI:
    """An event-sourced service: its runtime (bus, outbox relay, projections) runs for the
    app's lifetime. `on_start` hooks run before it starts; at shutdown, `before_stop` hooks
    run while it still runs (to stop consumers of the bus) and `on_stop` hooks after it
    stopped. `state` goes on `app.state` (the routes' dependencies read it there)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for hook in on_start:
            await hook()
        await runtime.start()
        try:
            yield
        finally:
            for hook in before_stop:
                await hook()
            await runtime.stop()
            for hook in on_stop:
                await hook()

    app = build_app(
        service=service,
        title=title,
        description=description,
        dependencies=runtime.dependencies(),
        lifespan=lifespan,
    )
    runtime.bus.on_connected(app.state.dependencies.recheck)  # /diagnostics: ok at once
    tokens = state.get("tokens")
    if isinstance(tokens, TokenService):
        follow_revocations(runtime.bus, tokens)
    for name, value in {**state, "runtime": runtime}.items():
        setattr(app.state, name, value)
    for router in routers:
        app.include_router(router)
    return app


def follow_revocations(bus: JetStreamBus, tokens: TokenService) -> RevocationFeed:
    """Keep `tokens` told of logouts and role changes, from one token lifetime back."""
    lookback = timedelta(seconds=tokens.ttl_seconds + 60)
    return RevocationFeed(bus, tokens.revocations, lookback)
