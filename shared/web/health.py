"""`/healthz` (the process is alive), `/readyz` (the process serves), `/diagnostics` (what
its dependencies answer) and `/metrics`.

Readiness checks nothing outside the process (ADR 0008): NATS, the store and, for the
gateway, the upstreams are shared by every replica, so taking pods out of the Service cannot
route around their outage; it would only turn answers a client can act on (a stored
registration, a 503 `STORE_UNAVAILABLE` with `Retry-After`) into an Ingress 503 for every
path. Their state goes to the gauge `agentflow_dependency_up{service, dependency}` and to
`/diagnostics`, which a `DependencyMonitor` refreshes in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel, Field

from shared.i18n import Language, Message
from shared.web.errors import ErrorResponse, error_body, language_of

log = logging.getLogger("agentflow.health")

HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
DIAGNOSTICS_PATH = "/diagnostics"

NOT_READY = Message("服务正在启动或停止", "The service is starting or stopping")
DEPENDENCY_DOWN = Message("依赖不可用:{failing}", "Dependencies unavailable: {failing}")

# How often the monitor checks (every second while something fails, so a recovery shows at
# once), and how long one check may take. An upstream answers the gateway from its own last
# round, so the gateway's view of the upstream's dependencies lags by up to one more round.
CHECK_INTERVAL_S = 5.0
RECHECK_INTERVAL_S = 1.0
CHECK_TIMEOUT_S = 3.0

DEPENDENCY_UP = Gauge(
    "agentflow_dependency_up",
    "1 if the dependency answered the last check, else 0 (checked every 5 s; every second "
    "while one fails).",
    ["service", "dependency"],
)

State = Literal["ok", "failing", "unknown"]


@dataclass(frozen=True)
class DependencyState:
    """A check's answer: `up`, and what the dependency reported of its own dependencies
    (the gateway's upstreams say how their store and NATS are)."""

    up: bool
    nested: Mapping[str, str] = field(default_factory=dict)


DependencyCheck = Callable[[], Awaitable[bool | DependencyState]]


@dataclass(frozen=True)
class DependencyReport:
    """The states of one round of checks; nested ones as `<dependency>.<its dependency>`."""

    states: dict[str, str]
    checked_at: datetime | None

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.states.items() if state != "ok"]

    def body(self, language: Language) -> tuple[int, dict[str, Any]]:
        """The `/diagnostics` answer: 200, or 503 in the documented error shape."""
        checked_at = self.checked_at.isoformat() if self.checked_at else None
        if not self.failing:
            return 200, {"status": "ok", "checked_at": checked_at, "dependencies": self.states}
        detail = DEPENDENCY_DOWN.render(language, failing=", ".join(self.failing))
        extra = {"checked_at": checked_at, "dependencies": self.states}
        return 503, error_body(503, "DEPENDENCY_UNAVAILABLE", detail, **extra)


class DependencyMonitor:
    """Checks a process's dependencies every `interval_s` (`recheck_s` while one fails),
    sets the gauge and keeps the report.

    Runs on the process's event loop; `latest` may be read from any thread (the worker's
    probes are served from one)."""

    def __init__(
        self,
        service: str,
        checks: Mapping[str, DependencyCheck],
        *,
        interval_s: float = CHECK_INTERVAL_S,
        recheck_s: float = RECHECK_INTERVAL_S,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.service = service
        self._checks = dict(checks)
        self._interval_s = interval_s
        self._recheck_s = recheck_s
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.latest = DependencyReport({name: "unknown" for name in self._checks}, None)

    async def refresh(self) -> DependencyReport:
        async with self._lock:
            names = list(self._checks)
            answers = await asyncio.gather(*(self._run(self._checks[n]) for n in names))
            states: dict[str, str] = {}
            for name, answer in zip(names, answers, strict=True):
                DEPENDENCY_UP.labels(self.service, name).set(1 if answer.up else 0)
                states[name] = "ok" if answer.up else "failing"
                states.update({f"{name}.{inner}": s for inner, s in answer.nested.items()})
            self.latest = DependencyReport(states, datetime.now(UTC))
            return self.latest

    async def report(self) -> DependencyReport:
        """The last round's report; the first round's, waiting for it, if none ran yet."""
        if self.latest.checked_at is None:
            return await self.refresh()
        return self.latest

    def start(self) -> None:
        if self._task is None:
            # Fresh ones: an app may be started again on another event loop (tests do).
            self._lock, self._wake = asyncio.Lock(), asyncio.Event()
            self._task = asyncio.create_task(self._every_interval(), name="dependency-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def recheck(self, *_: object) -> None:
        """Check again now rather than at the next round (e.g. when the bus has connected);
        returns at once, so it can be any event's callback."""
        self._wake.set()

    async def _every_interval(self) -> None:
        while True:
            self._wake.clear()
            try:
                report = await self.refresh()
                pause = self._recheck_s if report.failing else self._interval_s
            except Exception:  # a check's own failures are states; this would be a bug
                log.exception("dependency checks failed")
                pause = self._interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)

    async def _run(self, check: DependencyCheck) -> DependencyState:
        try:
            answer = await asyncio.wait_for(check(), timeout=self._timeout_s)
        except Exception:
            return DependencyState(up=False)
        return answer if isinstance(answer, DependencyState) else DependencyState(up=answer)


class Serving:
    """Set while the process serves: after its startup, until its shutdown begins."""

    def __init__(self) -> None:
        self.now = False


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]


class Diagnostics(BaseModel):
    status: Literal["ok"]
    checked_at: datetime | None = Field(description="When the last round of checks ended.")
    dependencies: dict[str, State] = Field(
        examples=[{"store": "ok", "nats": "ok"}],
        description="Every dependency's state; on the gateway also each upstream's own, "
        "as `<upstream>.<dependency>`.",
    )


class DependencyFailure(ErrorResponse):
    checked_at: datetime | None
    dependencies: dict[str, State] = Field(examples=[{"store": "ok", "nats": "failing"}])


def health_router(
    monitor: DependencyMonitor, serving: Serving, *, metrics: bool = True
) -> APIRouter:
    """`metrics=False`: no `/metrics` here (the gateway serves them on a port of their own)."""
    router = APIRouter(tags=["health"])

    @router.get(HEALTH_PATH, response_model=Health)
    async def healthz() -> Health:
        """The process is alive (liveness)."""
        return Health(status="ok")

    @router.get(
        READY_PATH,
        response_model=Ready,
        responses={503: {"model": ErrorResponse, "description": "Starting or stopping"}},
    )
    async def readyz(request: Request) -> Ready | JSONResponse:
        """The process serves requests (readiness). Checks nothing outside the process: a
        dependency's outage shows on `/diagnostics`, not here."""
        if serving.now:
            return Ready(status="ready")
        body = error_body(503, "NOT_READY", NOT_READY.render(language_of(request)))
        return JSONResponse(body, status_code=503)

    @router.get(
        DIAGNOSTICS_PATH,
        response_model=Diagnostics,
        responses={503: {"model": DependencyFailure, "description": "A dependency is failing"}},
    )
    async def diagnostics(request: Request) -> JSONResponse:
        """What the dependencies answered at the last check (every 5 s; every second while
        one fails): the store, NATS, and for the gateway its upstreams and theirs. For people
        and alerts, never a probe."""
        status, body = (await monitor.report()).body(language_of(request))
        return JSONResponse(body, status_code=status)

    if metrics:

        @router.get("/metrics", include_in_schema=False)
        async def exposition() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
