"""`/healthz` (the process answers), `/readyz` (its dependencies answer) and `/metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from shared.i18n import Message
from shared.web.errors import error_body, language_of

NOT_READY = Message("服务未就绪:{failing}", "Not ready: {failing}")

ReadinessCheck = Callable[[], Awaitable[bool]]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    checks: dict[str, str]


def health_router(checks: dict[str, ReadinessCheck], *, metrics: bool = True) -> APIRouter:
    """`metrics=False`: no `/metrics` here (the gateway serves them on a port of their own)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Readiness, responses={503: {"description": "Not ready"}})
    async def readyz(request: Request) -> Readiness | JSONResponse:
        """Every dependency (store, NATS, upstreams) answers."""
        results = await asyncio.gather(*(_run(check) for check in checks.values()))
        report = {name: "ok" if ok else "failing" for name, ok in zip(checks, results, strict=True)}
        if all(results):
            return Readiness(status="ready", checks=report)
        failing = ", ".join(name for name, state in report.items() if state != "ok")
        detail = NOT_READY.render(language_of(request), failing=failing)
        body = error_body(503, "NOT_READY", detail, checks=report)
        return JSONResponse(body, status_code=503)

    if metrics:

        @router.get("/metrics", include_in_schema=False)
        async def exposition() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _run(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=3.0)
    except Exception:
        return False
