"""Composition root of the gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, WebSocket
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import start_http_server
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.gateway import routing
from services.gateway.dependencies import gateway_dependencies
from services.gateway.live import execution_socket
from services.gateway.openapi import OpenAPIAggregator, asyncapi_router
from services.gateway.paths import check_path
from services.gateway.proxy import UpstreamClient
from services.gateway.settings import GatewaySettings
from services.gateway.socket_quota import SocketQuota
from shared.bus.client import JetStreamBus
from shared.errors import NotFound, Unauthorized
from shared.logging import configure_logging
from shared.security.tokens import TokenService
from shared.web.app import build_app, follow_revocations

log = logging.getLogger("agentflow.gateway")

DESCRIPTION = """低代码智能体平台的公开 API。The public API of the low-code agent platform.

Log in with **Authorize** (username and password), or send `Authorization: Bearer <token>`.
Errors always have the shape `{"detail", "error_code", "status_code"}`; send
`Accept-Language: en` for English messages.
"""

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(
    settings: GatewaySettings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings, service="gateway")
    upstreams = UpstreamClient(settings, transport=transport)
    tokens = TokenService(settings)
    bus = JetStreamBus(settings, name="agentflow-gateway")  # for live updates over WebSocket
    follow_revocations(bus, tokens)  # logouts and role changes, as every service
    sockets = SocketQuota(settings.max_websockets_per_user)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        metrics = None
        if settings.metrics_port:
            metrics, _thread = start_http_server(settings.metrics_port, settings.metrics_host)
        bus.start()
        try:
            yield
        finally:
            await bus.close()
            await upstreams.aclose()
            if metrics is not None:
                await asyncio.to_thread(metrics.shutdown)
                metrics.server_close()

    app = build_app(
        service="gateway",
        title="低代码智能体平台 API · Agentflow",
        description=DESCRIPTION,
        # Reported, never required: ready means the gateway itself serves (ADR 0008).
        dependencies=gateway_dependencies(settings, upstreams, bus),
        lifespan=lifespan,
        # /metrics is not public: it has a listener of its own (AGENTFLOW_GATEWAY_METRICS_PORT).
        metrics_route=False,
    )
    bus.on_connected(app.state.dependencies.recheck)  # /diagnostics: ok at once
    app.state.settings = settings
    app.state.upstreams = upstreams
    app.state.tokens = tokens

    aggregator = OpenAPIAggregator(
        base=get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        ),
        upstreams=settings.upstreams(),
        http=upstreams.http,
        cache_s=settings.openapi_cache_s,
    )
    # The merged document replaces FastAPI's own; /docs and /redoc read it from the same URL.
    app.router.routes[:] = [
        r for r in app.router.routes if not (isinstance(r, Route) and r.path == app.openapi_url)
    ]

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> JSONResponse:
        return JSONResponse(await aggregator.document())

    app.include_router(asyncapi_router())  # the WebSocket's document (AsyncAPI)

    @app.websocket("/api/v1/ws/executions/{execution_id}")
    async def execution_updates(websocket: WebSocket, execution_id: str) -> None:
        await execution_socket(websocket, execution_id, tokens, upstreams, bus, sockets)

    # A plain ASGI endpoint: no request object, no dependency solving, for the hot path.
    app.router.routes.append(
        Route("/api/{path:path}", Proxy(upstreams, tokens), methods=_METHODS,
              include_in_schema=False)
    )  # fmt: skip
    return app


class Proxy:
    """Every `/api/` route the gateway does not serve itself: checked, then forwarded."""

    def __init__(self, upstreams: UpstreamClient, tokens: TokenService) -> None:
        self._upstreams = upstreams
        self._tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        check_path(path, scope.get("raw_path") or b"")
        route = routing.resolve(path)
        if route is None:
            raise NotFound
        if not route.public:
            _check_token(scope, self._tokens)
        await self._upstreams.forward(scope, receive, send, route.upstream)


def _check_token(scope: Scope, tokens: TokenService) -> None:
    """Refuse unauthenticated calls here; services verify again (defense in depth)."""
    authorization = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized
    tokens.verify(token.strip())


async def wait_for_upstreams(settings: GatewaySettings) -> None:
    """Give upstreams a moment to come up, so the gateway is the last to answer."""
    if settings.wait_for_upstreams_s <= 0:
        return
    deadline = asyncio.get_running_loop().time() + settings.wait_for_upstreams_s
    async with httpx.AsyncClient(timeout=1.0) as client:
        for name, base in settings.upstreams().items():
            while True:
                try:
                    if (await client.get(base + "/healthz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    log.warning(
                        "%s did not answer at %s; serving anyway (503 until it does)", name, base
                    )
                    break
                await asyncio.sleep(0.2)
