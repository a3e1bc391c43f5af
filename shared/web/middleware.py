"""Request ids and Prometheus request metrics, as plain ASGI middleware (no per-request task)."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import context_from

REQUEST_ID_HEADER = "x-request-id"
# At INFO only with AGENTFLOW_ACCESS_LOG (shared.logging.set_access_log); 5xx always.
access_log = logging.getLogger("agentflow.access")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/diagnostics", "/metrics"})
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_NO_PARENT = otel_context.Context()  # a request without trace headers starts a trace
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_tracer = trace.get_tracer("agentflow.http")
HTTP_REQUESTS = Counter(
    "agentflow_http_requests_total",
    "HTTP requests served, by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "agentflow_http_request_duration_seconds",
    "HTTP request latency, by route template.",
    ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


class RequestContextMiddleware:
    """Takes or makes an `X-Request-ID`, echoes it, and records request metrics."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        # The metrics' children by label values: `labels()` validates and locks on each call.
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        carrier: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
            elif key in _TRACE_HEADERS:
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        request_id = incoming if _valid_request_id(incoming) else uuid.uuid4().hex
        echoed = (b"x-request-id", request_id.encode("latin-1"))
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        method = scope.get("method", "")
        span = _tracer.start_span(
            method, context=context_from(carrier) if carrier else _NO_PARENT, kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "agentflow.request_id": request_id},
        )  # fmt: skip
        attached = otel_context.attach(trace.set_span_in_context(span))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            otel_context.detach(attached)
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attributes({"http.route": route, "http.response.status_code": status})
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
            self._count(method, route, status, elapsed)
            # The path only: query strings may carry tokens (e.g. WebSocket `?token=`).
            path = scope.get("path", "")
            if path in _QUIET_PATHS:  # probes: /readyz answers 503 while starting
                level = logging.DEBUG
            else:
                level = logging.WARNING if status >= 500 else logging.INFO
            access_log.log(level, "%s %s %s %.1fms", method, path, status, elapsed * 1000)
            request_id_var.reset(token)

    def _count(self, method: str, route: str, status: int, elapsed: float) -> None:
        counted = self._counted.get((method, route, str(status)))
        if counted is None:
            counted = HTTP_REQUESTS.labels(self.service, method, route, str(status))
            self._counted[(method, route, str(status))] = counted
        counted.inc()
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[(method, route)] = HTTP_LATENCY.labels(self.service, method, route)
        timed.observe(elapsed)


def _route_template(scope: Scope) -> str:
    # The template keeps label cardinality bounded; unmatched paths collapse into one label.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"
