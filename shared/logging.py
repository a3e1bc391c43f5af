"""One log format for every process: time, level, service, request id, trace and span ids,
logger, message; as text (the default) or as one JSON object per line
(`AGENTFLOW_LOG_FORMAT=json`, for log shippers)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from shared.settings import PlatformSettings
from shared.tracing import configure_tracing, current_ids
from shared.web.middleware import request_id_var


class _ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        ids = current_ids()
        record.trace_id, record.span_id = ids if ids else ("-", "-")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "service": getattr(record, "service", ""),
            "request_id": getattr(record, "request_id", "-"),
            "trace_id": getattr(record, "trace_id", "-"),
            "span_id": getattr(record, "span_id", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(settings: PlatformSettings, *, service: str) -> None:
    """Logging and tracing for this process (once)."""
    configure_tracing(service)
    root = logging.getLogger()
    if any(getattr(h, "_agentflow", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._agentflow = True  # type: ignore[attr-defined]
    handler.addFilter(_ContextFilter(service))
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s [%(service)s %(request_id)s %(trace_id)s] "
                "%(name)s: %(message)s"
            )
        )
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # nats-py logs every reconnect attempt at ERROR; ours says it once, more usefully.
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    # One line per proxied request is the access log's job, not httpx's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
