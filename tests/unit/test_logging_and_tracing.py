"""Log lines carry the trace they were written in; JSON logs are one object per line."""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from shared.logging import JsonFormatter, _ContextFilter
from shared.tracing import context_from, current_ids, inject_headers


def test_a_json_log_line_names_its_trace_and_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord(
        "agentflow.test", logging.INFO, __file__, 1, "运行 %s", ("ok",), None
    )
    with tracer.start_as_current_span("work") as span:
        _ContextFilter("worker").filter(record)
        line = json.loads(JsonFormatter().format(record))
        ids = span.get_span_context()
    assert line["message"] == "运行 ok"
    assert line["service"] == "worker"
    assert line["trace_id"] == f"{ids.trace_id:032x}"
    assert line["span_id"] == f"{ids.span_id:016x}"
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
    _ContextFilter("worker").filter(outside)
    assert json.loads(JsonFormatter().format(outside))["trace_id"] == "-"


def test_trace_context_survives_a_trip_through_headers() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("sender"):
        headers = dict(inject_headers({}))
        sent = current_ids()
    assert "traceparent" in headers
    with tracer.start_as_current_span("receiver", context=context_from(headers)) as span:
        assert span.get_span_context().trace_id == int(sent[0], 16)  # type: ignore[index]
        assert trace.get_current_span() is span
    assert current_ids() is None
