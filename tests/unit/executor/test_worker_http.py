"""A worker's probes and metrics, over real HTTP."""

from __future__ import annotations

import httpx

from services.executor.worker_http import serve_worker_http
from tests.support.processes import free_port


def test_probes_say_alive_and_ready_only_while_connected() -> None:
    connected = {"now": False}
    port = free_port()
    server = serve_worker_http("127.0.0.1", port, lambda: connected["now"])
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.get(base + "/healthz").json() == {"status": "ok"}
        not_ready = httpx.get(base + "/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["error_code"] == "NOT_READY"
        assert not_ready.json()["checks"] == {"nats": "failing"}
        connected["now"] = True
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "checks": {"nats": "ok"}}
        metrics = httpx.get(base + "/metrics")
        assert metrics.status_code == 200
        assert "python_info" in metrics.text or "process_" in metrics.text
        missing = httpx.get(base + "/nope")
        assert missing.status_code == 404
        assert missing.json()["status_code"] == 404
    finally:
        server.shutdown()
