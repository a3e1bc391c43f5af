"""One log format for every process: time, level, service, request id, logger, message."""

from __future__ import annotations

import logging

from shared.settings import PlatformSettings
from shared.web.middleware import request_id_var


class _RequestIdFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.service = self.service
        return True


def configure_logging(settings: PlatformSettings, *, service: str) -> None:
    root = logging.getLogger()
    if any(getattr(h, "_agentflow", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler._agentflow = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter(service))
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s [%(service)s %(request_id)s] %(name)s: %(message)s"
        )
    )
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # nats-py logs every reconnect attempt at ERROR; ours says it once, more usefully.
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    # One line per proxied request is the access log's job, not httpx's.
    logging.getLogger("httpx").setLevel(logging.WARNING)
