"""A worker's probes, diagnostics and metrics, over real HTTP, against a real nats-server that
the test stops and starts (ADR 0008: readiness does not follow NATS)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.executor.settings import WorkerSettings
from services.executor.worker.http import WorkerHealth, serve_worker_http
from shared.bus.client import JetStreamBus
from shared.web.health import DependencyMonitor
from tests.support.processes import NatsServer, free_port

SERVICE = "worker-under-test"  # a label of its own: other tests' gauges share the registry


def gauge(base: str, dependency: str) -> float | None:
    text = httpx.get(base + "/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agentflow_dependency_up" and sample.labels == {
                "service": SERVICE,
                "dependency": dependency,
            }:
                return sample.value
    return None


async def get(url: str, **kwargs: Any) -> httpx.Response:
    """Off the event loop, which the bus and the monitor need while we wait."""
    return await asyncio.to_thread(httpx.get, url, **kwargs)


async def eventually(probe: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait (off the event loop, which the bus and the monitor need) until `probe` holds."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(probe):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_ready_through_a_nats_outage_which_diagnostics_and_the_gauge_report(
    tmp_path: Path,
) -> None:
    nats = NatsServer(tmp_path)
    nats.start()
    bus = JetStreamBus(WorkerSettings(environment="test", nats_url=nats.url), name="test-worker")
    health = WorkerHealth(DependencyMonitor(SERVICE, {"nats": bus.ping}, recheck_s=0.1))
    bus.on_connected(health.monitor.recheck)
    port = free_port()
    server = serve_worker_http("127.0.0.1", port, health)
    base = f"http://127.0.0.1:{port}"

    def diagnostics() -> httpx.Response:
        return httpx.get(base + "/diagnostics", headers={"Accept-Language": "en"})

    try:
        # Not started: alive, not ready, nothing checked yet.
        assert (await get(base + "/healthz")).json() == {"status": "ok"}
        starting = await get(base + "/readyz")
        assert starting.status_code == 503
        assert starting.json()["error_code"] == "NOT_READY"
        assert (await asyncio.to_thread(diagnostics)).json()["dependencies"] == {"nats": "unknown"}

        bus.start()
        health.start()
        assert (await get(base + "/readyz")).json() == {"status": "ready"}
        await eventually(lambda: diagnostics().status_code == 200)
        assert (await asyncio.to_thread(diagnostics)).json()["dependencies"] == {"nats": "ok"}
        assert await asyncio.to_thread(gauge, base, "nats") == 1.0

        nats.stop()
        await eventually(lambda: diagnostics().status_code == 503)
        down = (await asyncio.to_thread(diagnostics)).json()
        assert down["error_code"] == "DEPENDENCY_UNAVAILABLE"
        assert down["status_code"] == 503
        assert down["dependencies"] == {"nats": "failing"}
        assert "nats" in down["detail"]
        assert await asyncio.to_thread(gauge, base, "nats") == 0.0
        assert (await get(base + "/readyz")).json() == {"status": "ready"}  # still ready
        assert (await get(base + "/healthz")).status_code == 200

        nats.start()  # the bus reconnects by itself
        await eventually(lambda: diagnostics().status_code == 200)
        assert await asyncio.to_thread(gauge, base, "nats") == 1.0

        await health.stop()  # draining
        assert (await get(base + "/readyz")).status_code == 503
        missing = await get(base + "/nope")
        assert missing.status_code == 404
        assert missing.json()["status_code"] == 404
    finally:
        server.shutdown()
        await health.stop()
        await bus.close()
        nats.stop()


async def test_liveness_fails_while_the_event_loop_is_blocked() -> None:
    health = WorkerHealth(DependencyMonitor(SERVICE, {}), max_loop_silence_s=0.3)
    port = free_port()
    server = serve_worker_http("127.0.0.1", port, health)
    base = f"http://127.0.0.1:{port}"
    try:
        health.start()
        await eventually(lambda: httpx.get(base + "/healthz").status_code == 200)
        time.sleep(0.6)  # noqa: ASYNC251 - the point: a node that blocks the loop
        # Asked while the loop is still blocked (by this very call): the heartbeat is late.
        stalled = httpx.get(base + "/healthz", headers={"Accept-Language": "en"})  # noqa: ASYNC210
        assert stalled.status_code == 503
        assert stalled.json()["error_code"] == "LOOP_STALLED"
        assert "event loop" in stalled.json()["detail"]
        # The loop turns again: alive again.
        await eventually(lambda: httpx.get(base + "/healthz").status_code == 200)
    finally:
        server.shutdown()
        await health.stop()
