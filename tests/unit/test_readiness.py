"""Readiness says the process serves; `/diagnostics` and `agentflow_dependency_up` say how
its dependencies are (ADR 0008).

The monitor is driven by plain checks the test flips; the services are the real apps of
their `create_app`, on a SQLite store, with a NATS URL where nothing listens (and, for the
gateway, upstream URLs where nothing listens).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from shared.web.health import DependencyMonitor, DependencyState
from tests.support.processes import free_port

SECRET = "unit-test-secret-" + "x" * 32


def gauge(service: str, dependency: str) -> float | None:
    return REGISTRY.get_sample_value(
        "agentflow_dependency_up", {"service": service, "dependency": dependency}
    )


# -- the monitor -------------------------------------------------------------------------------


class Switch:
    """A dependency the test turns on and off."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.up


async def test_a_round_sets_the_gauge_and_the_report() -> None:
    store, nats = Switch(), Switch(up=False)
    monitor = DependencyMonitor("unit-a", {"store": store, "nats": nats})
    assert monitor.latest.states == {"store": "unknown", "nats": "unknown"}
    assert monitor.latest.checked_at is None

    report = await monitor.report()  # none yet: waits for a first round
    assert report.states == {"store": "ok", "nats": "failing"}
    assert report.failing == ["nats"]
    assert (gauge("unit-a", "store"), gauge("unit-a", "nats")) == (1.0, 0.0)

    status, body = report.body("en")
    assert status == 503
    assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
    assert body["status_code"] == 503
    assert body["detail"] == "Dependencies unavailable: nats"
    assert body["dependencies"] == {"store": "ok", "nats": "failing"}
    assert "nats" in report.body("zh")[1]["detail"]
    assert report.body("zh")[1]["detail"] != body["detail"]

    nats.up = True
    assert (await monitor.report()).failing == ["nats"]  # the last round, not a new one
    status, body = (await monitor.refresh()).body("en")
    assert (status, body["status"], body["dependencies"]) == (
        200,
        "ok",
        {"store": "ok", "nats": "ok"},
    )
    assert gauge("unit-a", "nats") == 1.0


async def test_a_check_that_raises_or_hangs_is_failing_not_an_error() -> None:
    async def raises() -> bool:
        raise ConnectionRefusedError

    async def hangs() -> bool:
        await asyncio.sleep(60)
        return True

    monitor = DependencyMonitor("unit-b", {"raises": raises, "hangs": hangs}, timeout_s=0.1)
    report = await monitor.refresh()
    assert report.states == {"raises": "failing", "hangs": "failing"}
    assert gauge("unit-b", "hangs") == 0.0


async def test_nested_states_are_reported_but_only_direct_ones_are_gauged() -> None:
    async def upstream() -> DependencyState:
        return DependencyState(up=True, nested={"store": "ok", "nats": "failing"})

    report = await DependencyMonitor("unit-c", {"auth": upstream}).refresh()
    assert report.states == {"auth": "ok", "auth.store": "ok", "auth.nats": "failing"}
    assert report.failing == ["auth.nats"]
    assert gauge("unit-c", "auth") == 1.0
    assert gauge("unit-c", "auth.nats") is None


async def test_rounds_repeat_faster_while_failing_and_at_once_on_recheck() -> None:
    nats = Switch(up=False)
    monitor = DependencyMonitor("unit-d", {"nats": nats}, interval_s=3600, recheck_s=0.01)
    monitor.start()
    try:
        deadline = time.monotonic() + 10
        while nats.calls < 3:  # failing: checked again and again
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        nats.up = True
        while monitor.latest.failing:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        settled = nats.calls
        await asyncio.sleep(0.2)
        assert nats.calls == settled  # all well: next round in an hour
        nats.up = False
        await monitor.recheck()  # e.g. the bus reconnected: check now, not in an hour
        while not monitor.latest.failing:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert gauge("unit-d", "nats") == 0.0
    finally:
        await monitor.stop()


# -- the services' apps ------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AGENTFLOW_* of the machine, and no `.env` to read: settings come from the test."""
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_") or key == "NATS_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"  # a free port: connections are refused


def common(tmp_path: Path) -> dict[str, Any]:
    return {
        "environment": "test",
        "jwt_secret": SECRET,
        "nats_url": f"nats://{nowhere()}",
        "store": "sqlite",
        "data_dir": tmp_path / "data",
    }


def auth_app(tmp_path: Path) -> FastAPI:
    from services.auth.main import create_app
    from services.auth.settings import AuthSettings

    return create_app(AuthSettings(**common(tmp_path), argon2_memory_kib=8192, argon2_time_cost=1))


def workflows_app(tmp_path: Path) -> FastAPI:
    from services.workflows.main import create_app
    from services.workflows.settings import WorkflowsSettings

    return create_app(WorkflowsSettings(**common(tmp_path)))


def executor_app(tmp_path: Path) -> FastAPI:
    from services.executor.main import create_app
    from services.executor.settings import ExecutorSettings

    return create_app(ExecutorSettings(**common(tmp_path)))


def datasources_app(tmp_path: Path) -> FastAPI:
    from services.datasources.main import create_app
    from services.datasources.settings import DataSourcesSettings

    return create_app(DataSourcesSettings(**common(tmp_path)))


SERVICES: dict[str, Callable[[Path], FastAPI]] = {
    "auth": auth_app,
    "workflows": workflows_app,
    "executor": executor_app,
    "datasources": datasources_app,
}


def wait_checked(client: TestClient) -> httpx.Response:
    """`/diagnostics` once the monitor has run a round with NATS refused."""
    deadline = time.monotonic() + 20
    while True:
        response: httpx.Response = client.get("/diagnostics", headers={"Accept-Language": "en"})
        if "unknown" not in response.json()["dependencies"].values():
            return response
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_is_ready_without_nats_and_says_why_on_diagnostics(
    service: str, tmp_path: Path, clean_env: None
) -> None:
    app = SERVICES[service](tmp_path)
    with TestClient(app) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/healthz").json() == {"status": "ok"}
        diagnostics = wait_checked(client)
        assert diagnostics.status_code == 503
        body = diagnostics.json()
        assert body.keys() >= {"detail", "error_code", "status_code", "checked_at"}
        assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
        assert body["dependencies"] == {"store": "ok", "nats": "failing"}
        assert body["detail"] == "Dependencies unavailable: nats"
        assert gauge(service, "nats") == 0.0
        assert gauge(service, "store") == 1.0
        assert 'agentflow_dependency_up{dependency="nats",service="' in client.get("/metrics").text


def test_users_register_and_log_in_while_nats_is_down(tmp_path: Path, clean_env: None) -> None:
    """ADR 0003's promise, on a ready pod: the event waits in the outbox."""
    with TestClient(auth_app(tmp_path)) as client:
        assert client.get("/readyz").status_code == 200
        user = {"username": "nonats", "email": "nonats@example.com", "password": "password123"}
        assert client.post("/api/v1/auth/register", json=user).status_code == 201
        login = client.post(
            "/api/v1/auth/login", data={"username": "nonats", "password": "password123"}
        )
        assert login.status_code == 200, login.text
        assert wait_checked(client).json()["dependencies"]["nats"] == "failing"


def test_not_ready_before_startup_and_after_shutdown(tmp_path: Path, clean_env: None) -> None:
    app = auth_app(tmp_path)
    before = TestClient(app).get("/readyz")  # no `with`: the lifespan never ran
    assert before.status_code == 503
    assert before.json()["error_code"] == "NOT_READY"
    assert before.json()["status_code"] == 503
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
    assert TestClient(app).get("/readyz").status_code == 503


def test_the_gateway_is_ready_with_every_upstream_and_nats_down(
    tmp_path: Path, clean_env: None
) -> None:
    from services.gateway.main import create_app
    from services.gateway.settings import GatewaySettings

    upstreams: dict[str, Any] = {f"{name}_url": f"http://{nowhere()}" for name in SERVICES}
    settings = GatewaySettings(**common(tmp_path), **upstreams, metrics_port=0)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        assert client.get("/docs").status_code == 200
        login = client.post("/api/v1/auth/login", data={"username": "a", "password": "b"})
        assert login.status_code == 503
        assert login.json()["error_code"] == "UPSTREAM_UNAVAILABLE"
        body = wait_checked(client).json()
        assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
        assert body["dependencies"] == dict.fromkeys(["nats", *SERVICES], "failing")
        for name in ["nats", *SERVICES]:
            assert gauge("gateway", name) == 0.0
