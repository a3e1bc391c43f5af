"""Traces (OpenTelemetry): one trace follows a request from the gateway into a service, and
an execution from the request that started it to every node a worker runs.

The exporter is chosen by the standard variables: OTLP over HTTP when
`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, nothing by
default (`OTEL_SDK_DISABLED=true` turns tracing off entirely). `AGENTFLOW_TRACE_FILE` also
writes every finished span as one JSON line, for local debugging and the tests.
Context crosses HTTP and NATS as W3C `traceparent` headers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

_configured = False


class JsonLinesExporter(SpanExporter):
    """Finished spans appended to a file as JSON lines (several processes may share it)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = [json.dumps(_as_dict(span), ensure_ascii=False) + "\n" for span in spans]
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write("".join(lines))  # one write: lines of concurrent processes stay whole
        return SpanExportResult.SUCCESS


def _as_dict(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    parent = span.parent
    return {
        "service": span.resource.attributes.get("service.name"),
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}" if context else None,
        "span_id": f"{context.span_id:016x}" if context else None,
        "parent_id": f"{parent.span_id:016x}" if parent else None,
        "kind": span.kind.name,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


def configure_tracing(service: str) -> None:
    """Install this process's tracer provider (once), with the exporters the environment asks
    for; with none, spans are still made (and propagated) but go nowhere."""
    global _configured
    if _configured or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": f"agentflow-{service}"}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace_file = os.environ.get("AGENTFLOW_TRACE_FILE")
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(trace_file)))
    trace.set_tracer_provider(provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def inject_headers(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Add the current trace context (`traceparent`) to outgoing headers."""
    inject(headers)
    return headers


def context_from(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The trace context carried by incoming headers (empty when there is none)."""
    return extract(dict(headers or {}))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, for log lines; None outside any trace."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
