"""A worker's small HTTP side, on `AGENTFLOW_WORKER_METRICS_PORT`, for Kubernetes' probes,
Prometheus and people: `/healthz` (its event loop turns), `/readyz` (it has started and is
not draining), `/diagnostics` (NATS, as last checked) and `/metrics`.

Served from a thread (the worker runs no web framework), in the services' shapes. Readiness
does not follow NATS (ADR 0008): no traffic is routed to a worker, and a worker NotReady
through a NATS outage would only block node drains (its disruption budget counts ready pods)
and hide its metrics from Prometheus' discovery, exactly when they matter. The worker takes
nodes again by itself once NATS is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from shared.bus.client import JetStreamBus
from shared.i18n import Message, pick_language
from shared.web.errors import error_body
from shared.web.health import (
    DIAGNOSTICS_PATH,
    HEALTH_PATH,
    NOT_READY,
    READY_PATH,
    DependencyMonitor,
)

StartResponse = Callable[..., Any]

# A loop that has not turned for this long runs no node and acks none: restart the worker.
# Far above any normal pause; a node that blocks the loop this long is a bug.
MAX_LOOP_SILENCE_S = 30.0
LOOP_STALLED = Message(
    "工作进程的事件循环已 {seconds} 秒没有响应",
    "The worker's event loop has not turned for {seconds} s",
)


class WorkerHealth:
    """What the probes read. Written on the worker's event loop, read from the HTTP thread
    (plain attribute reads and writes, atomic in CPython)."""

    def __init__(
        self, monitor: DependencyMonitor, *, max_loop_silence_s: float = MAX_LOOP_SILENCE_S
    ) -> None:
        self.monitor = monitor
        self.serving = False
        self.max_loop_silence_s = max_loop_silence_s
        self._last_turn = time.monotonic()
        self._beat: asyncio.Task[None] | None = None

    def loop_silence_s(self) -> float:
        return time.monotonic() - self._last_turn

    def start(self) -> None:
        """On the worker's loop: mark each turn, check dependencies, and say ready."""
        self._last_turn = time.monotonic()
        self._beat = asyncio.create_task(self._turns(), name="worker-heartbeat")
        self.monitor.start()
        self.serving = True

    async def stop(self) -> None:
        self.serving = False
        await self.monitor.stop()
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat

    async def _turns(self) -> None:
        while True:
            self._last_turn = time.monotonic()
            await asyncio.sleep(1.0)


def worker_health(bus: JetStreamBus) -> WorkerHealth:
    """A worker's probes as `main` wires them: NATS is its one dependency."""
    health = WorkerHealth(DependencyMonitor("worker", {"nats": bus.ping}))
    bus.on_connected(health.monitor.recheck)  # /diagnostics: ok as soon as connected
    return health


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def worker_http_app(health: WorkerHealth) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        language = pick_language(environ.get("HTTP_ACCEPT_LANGUAGE"))
        if path == HEALTH_PATH:
            silence = health.loop_silence_s()
            if silence <= health.max_loop_silence_s:
                return _json(start_response, 200, {"status": "ok"})
            detail = LOOP_STALLED.render(language, seconds=int(silence))
            return _json(start_response, 503, error_body(503, "LOOP_STALLED", detail))
        if path == READY_PATH:
            if health.serving:
                return _json(start_response, 200, {"status": "ready"})
            detail = NOT_READY.render(language)
            return _json(start_response, 503, error_body(503, "NOT_READY", detail))
        if path == DIAGNOSTICS_PATH:
            status, body = health.monitor.latest.body(language)
            return _json(start_response, status, body)
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        return _json(start_response, 404, error_body(404, "NOT_FOUND", "Not Found"))

    return app


def serve_worker_http(host: str, port: int, health: WorkerHealth) -> ThreadingWSGIServer:
    """Start serving in a daemon thread; the returned server's `shutdown()` stops it."""
    server = make_server(
        host, port, worker_http_app(health), ThreadingWSGIServer, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body, ensure_ascii=False).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
