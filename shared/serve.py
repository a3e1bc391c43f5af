"""Run one service under uvicorn; the thin entrypoint of every `python -m services.<name>`."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from shared.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # shared.logging already configured the root logger
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
