"""A worker's small HTTP side: `/healthz`, `/readyz` (connected to NATS) and `/metrics`, on
`AGENTFLOW_WORKER_METRICS_PORT`, for Kubernetes' probes and Prometheus. Served from a
thread (the worker runs no web framework); answers in the services' shapes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from shared.web.errors import error_body
from shared.web.health import NOT_READY

StartResponse = Callable[..., Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def worker_http_app(ready: Callable[[], bool]) -> Callable[..., Iterable[bytes]]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _json(start_response, 200, {"status": "ok"})
        if path == "/readyz":
            if ready():
                return _json(start_response, 200, {"status": "ready", "checks": {"nats": "ok"}})
            detail = NOT_READY.render("en", failing="nats")
            body = error_body(503, "NOT_READY", detail, checks={"nats": "failing"})
            return _json(start_response, 503, body)
        if path == "/metrics":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        return _json(start_response, 404, error_body(404, "NOT_FOUND", "Not Found"))

    return app


def serve_worker_http(host: str, port: int, ready: Callable[[], bool]) -> ThreadingWSGIServer:
    """Start serving in a daemon thread; the returned server's `shutdown()` stops it."""
    server = make_server(
        host, port, worker_http_app(ready), ThreadingWSGIServer, handler_class=_Quiet
    )
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server


def _json(start_response: StartResponse, status: int, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]
