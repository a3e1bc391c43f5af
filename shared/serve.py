"""Run one service under uvicorn; the thin entrypoint of every `python -m services.<name>`."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.logging import install_redaction
from shared.settings import ServiceSettings

# A server keeps an idle connection longer than the platform's own clients do, so a client
# never reuses a connection at the moment the server closes it (that fails the request, and
# a POST cannot safely be sent again).
KEEP_ALIVE_S = 30
INTERNAL_KEEPALIVE_S = 10.0  # httpx clients between services drop idle connections sooner


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    # uvicorn logs each WebSocket handshake with its query string (`?token=`): redacted.
    install_redaction()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # shared.logging already configured the root logger
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=KEEP_ALIVE_S,
        # Named, not "auto": measured cheapest (httptools about a third less CPU per request
        # than h11), and a missing one fails the start instead of falling back silently.
        loop="uvloop",
        http="httptools",
        # The live-update socket's messages are small JSON: compressing each one cost more CPU
        # than it saved bytes (issue 15).
        ws_per_message_deflate=False,
    )
