"""Composition root of a worker process: settings, the bus, the HTTP client the runners share,
the chat and data sources clients, the probes, and the `Worker` that takes node runs until
SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import httpx

from services.executor.settings import WorkerSettings
from services.executor.worker.consumer import Worker
from services.executor.worker.datasources_client import DataSourcesClient
from services.executor.worker.http import serve_worker_http, worker_health
from services.executor.worker.llm.client import ChatClient, ResponseLimits
from services.executor.worker.runners.context import NodeServices
from shared.bus.client import JetStreamBus
from shared.logging import configure_logging
from shared.security.grants import QueryGrants
from shared.settings_loading import load_settings

log = logging.getLogger("agentflow.worker")


async def main() -> None:
    settings = load_settings(WorkerSettings, "agentflow-worker")
    configure_logging(settings, service="worker")
    bus = JetStreamBus(settings, name="agentflow-worker")
    async with httpx.AsyncClient(follow_redirects=False) as http:
        chat = ChatClient(
            http,
            max_retries=settings.llm_max_retries,
            backoff_s=settings.llm_backoff_s,
            max_backoff_s=settings.llm_max_backoff_s,
            limits=ResponseLimits(
                max_bytes=settings.llm_max_response_bytes,
                max_text_chars=settings.llm_max_text_chars,
                max_tool_argument_chars=settings.llm_max_tool_argument_chars,
                max_tool_calls=settings.llm_max_tool_calls,
            ),
        )
        services = NodeServices(
            http=http,
            chat=chat,
            outbound=settings.outbound_policy(),
            environ=dict(os.environ),
            data_sources=DataSourcesClient(http, settings.datasources_url, QueryGrants(settings)),
        )
        health = worker_health(bus)
        if settings.worker_metrics_port:
            serve_worker_http(settings.worker_metrics_host, settings.worker_metrics_port, health)
        worker = Worker(bus, settings, services)
        worker.consumer.start()
        bus.start()
        health.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("worker started; waiting for node runs")
        await stop.wait()
        # Graceful: take nothing new; finish what is in hand within the grace period, then
        # hand the rest back so another worker runs it now (not after the ack wait).
        log.info(
            "stopping: finishing nodes in hand for up to %gs", settings.worker_shutdown_grace_s
        )
        health.serving = False
        await worker.consumer.stop(grace_s=settings.worker_shutdown_grace_s)
        await health.stop()
        await bus.close()
