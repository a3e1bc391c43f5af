"""The skeleton every service's `create_app` starts from."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from shared.web.errors import install_error_handlers
from shared.web.health import ReadinessCheck, health_router
from shared.web.middleware import RequestContextMiddleware

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_app(
    *,
    service: str,
    title: str,
    description: str,
    readiness: dict[str, ReadinessCheck],
    lifespan: Lifespan | None = None,
    **kwargs: Any,
) -> FastAPI:
    """A FastAPI app with offline docs, the error shape, request ids, metrics and health."""
    app: FastAPI = FastAPIOffline(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        **kwargs,
    )
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router(readiness))
    return app
