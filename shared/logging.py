"""One log format for every process: time, level, service, request id, trace and span ids,
logger, message; as text (the default) or as one JSON object per line
(`AGENTFLOW_LOG_FORMAT=json`, for log shippers)."""

from __future__ import annotations

import json
import logging
import re
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


# A path's query string (uvicorn's WebSocket lines carry `?token=…`; an API source's URL may
# carry a key) and anything shaped like a JWT (header.payload.signature) never reach a line.
_QUERY = re.compile(r"(/[^\s?#\"']*)\?[^\s#\"']+")
_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")
REDACTED = "[redacted]"
# uvicorn logs requests (access) and WebSocket handshakes (error) with path and query.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets")


def redact(text: str) -> str:
    """`text` without query strings or JWTs."""
    return _JWT.sub(REDACTED, _QUERY.sub(rf"\1?{REDACTED}", text))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message when it carries a query string or a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: logging reports it itself, later
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_REDACTING = RedactingFilter()

# uvicorn's lines for each WebSocket: the handshake's answer, then open and close.
_WEBSOCKET_LINES = frozenset(
    {
        '%s - "WebSocket %s" [accepted]',
        '%s - "WebSocket %s" 403',
        '%s - "WebSocket %s" %d',
        "connection open",
        "connection closed",
        "connection rejected (%d %s)",
        "HTTP response sent (%d %s)",
    }
)


class _WebSocketAccessLines(logging.Filter):
    """Drops uvicorn's per-WebSocket lines (an access log of sockets) while the access log
    is off; its other lines (start, stop, errors) pass."""

    enabled = False

    def filter(self, record: logging.LogRecord) -> bool:
        return self.enabled or record.levelno > logging.INFO or record.msg not in _WEBSOCKET_LINES


_WEBSOCKET_ACCESS = _WebSocketAccessLines()
ACCESS_LOGGER = "agentflow.access"


def set_access_log(enabled: bool) -> None:
    """One line per request answered (`agentflow.access`) and uvicorn's lines per WebSocket,
    or (the default) neither: each line is formatted, written and relayed by the process
    manager, the largest part of a cheap request's logging. Answers of 5xx are logged
    either way (shared/web/middleware.py), as are errors."""
    logging.getLogger(ACCESS_LOGGER).setLevel(logging.INFO if enabled else logging.WARNING)
    _WEBSOCKET_ACCESS.enabled = enabled
    server = logging.getLogger("uvicorn.error")
    if _WEBSOCKET_ACCESS not in server.filters:
        # First: a dropped line is not redacted (formatted) for nothing.
        server.filters.insert(0, _WEBSOCKET_ACCESS)


def install_redaction(handler: logging.Handler | None = None) -> None:
    """Redact on the server's own loggers (whatever handler prints them) and on `handler`.
    Idempotent: every process calls it at start (configure_logging, shared.serve)."""
    targets: list[logging.Filterer] = [logging.getLogger(name) for name in _SERVER_LOGGERS]
    if handler is not None:
        targets.append(handler)
    for target in targets:
        if _REDACTING not in target.filters:
            target.addFilter(_REDACTING)


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
    set_access_log(settings.access_log)
    install_redaction()
    root = logging.getLogger()
    if any(getattr(h, "_agentflow", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._agentflow = True  # type: ignore[attr-defined]
    handler.addFilter(_ContextFilter(service))
    install_redaction(handler)  # every record of the process, whichever logger
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
