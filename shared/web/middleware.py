"""Request ids and Prometheus request metrics, as plain ASGI middleware (no per-request task)."""

from __future__ import annotations

import contextvars
import logging
import time
import uuid

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import context_from

REQUEST_ID_HEADER = "x-request-id"
access_log = logging.getLogger("agentflow.access")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/diagnostics", "/metrics"})
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
        request_id = incoming if _valid_request_id(incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        method = scope.get("method", "")
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers", [])
            if key in (b"traceparent", b"tracestate")
        }
        span = _tracer.start_span(
            method, context=context_from(carrier), kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "agentflow.request_id": request_id},
        )  # fmt: skip
        span_context = trace.set_span_in_context(span)
        attached = otel_context.attach(span_context)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            otel_context.detach(attached)
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
            HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            HTTP_LATENCY.labels(self.service, method, route).observe(elapsed)
            # The path only: query strings may carry tokens (e.g. WebSocket `?token=`).
            path = scope.get("path", "")
            level = logging.DEBUG if path in _QUIET_PATHS else logging.INFO
            access_log.log(level, "%s %s %s %.1fms", method, path, status, elapsed * 1000)
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    # The template keeps label cardinality bounded; unmatched paths collapse into one label.
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "<unmatched>"
