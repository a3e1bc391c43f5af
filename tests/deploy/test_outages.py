"""Each outage the manifests must ride out, against the running platform (ADR 0008).

The platform runs as processes, as in the pods (`python -m services.<name>`), on a PostgreSQL
cluster and a nats-server of the test's own, which the tests stop and start. Each pod is
probed on the paths the rendered overlays give its Deployment's probes. During a NATS
outage, a store outage and an upstream's crash, every pod that still runs stays ready (so the
Ingress keeps routing), the API answers what it can (docs, registration while NATS is down,
a retryable 503 in the error shape otherwise), and `/diagnostics` and the gauge
`agentflow_dependency_up` name what is down. Each test puts back what it took away.

Starts a platform: run under the shared lock (see the helpers' rules).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.web.health import DIAGNOSTICS_PATH
from tests.deploy.test_manifests import OVERLAYS, app_containers, module_of, probe_http, rendered
from tests.support.private_postgres import PrivatePostgres, require_private_postgres
from tests.support.stack import Stack, new_user

STORE_MODULES = ("services.auth", "services.workflows", "services.executor", "services.datasources")
UPSTREAMS = ("auth", "workflows", "executor", "datasources")
BOUNDED_S = 30.0  # far above the monitor's rounds (5 s, 1 s while failing) and reconnects

States = dict[str, str]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    require_private_postgres()
    cluster = PrivatePostgres().create()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def platform(
    postgres: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    probes()  # skips (or fails) here when the overlays cannot be rendered
    workdir = tmp_path_factory.mktemp("outages")
    stack = Stack(workdir, postgres.store_env(str(workdir / "data")), workers=1)
    try:
        yield stack.start()
    finally:
        stack.stop()


# -- the pods, as the manifests probe them ----------------------------------------------------


def probes() -> dict[str, tuple[str, str]]:
    """Module -> (liveness path, readiness path) of its Deployment, the same in every overlay."""
    found: dict[str, tuple[str, str]] = {}
    for overlay in OVERLAYS:
        for deployment in (o for o in rendered(overlay) if o["kind"] == "Deployment"):
            (container,) = app_containers(deployment)
            liveness = probe_http(container["livenessProbe"])
            readiness = probe_http(container["readinessProbe"])
            assert liveness is not None
            assert readiness is not None
            paths = (liveness[0], readiness[0])
            assert found.setdefault(module_of(container), paths) == paths, overlay
    return found


def pods(stack: Stack) -> dict[str, str]:
    """Module -> the base URL its probes, `/diagnostics` and `/metrics` are served at."""
    bases = {f"services.{name}": getattr(stack, name).base_url for name in UPSTREAMS}
    bases["services.gateway"] = stack.gateway.base_url
    bases["services.executor.worker"] = f"http://127.0.0.1:{stack.workers[0].port}"
    assert set(bases) == set(probes()), "a Deployment this test does not run"
    return bases


def metrics_url(stack: Stack, module: str) -> str:
    # The gateway's metrics are not on its public port.
    return stack.gateway_metrics_url if module == "services.gateway" else pods(stack)[module]


def service_label(module: str) -> str:
    return "worker" if module == "services.executor.worker" else module.removeprefix("services.")


def assert_pods_ready(stack: Stack, *, except_module: str | None = None) -> None:
    """Every pod answers its Deployment's liveness and readiness probes with 200."""
    for module, (liveness, readiness) in probes().items():
        if module == except_module:
            continue
        base = pods(stack)[module]
        for path in (liveness, readiness):
            response = httpx.get(base + path, timeout=10)
            assert response.status_code == 200, (module, path, response.text)


def diagnostics_when(base: str, holds: Callable[[States], bool]) -> httpx.Response:
    """`/diagnostics` once its states satisfy `holds` (the monitor checks every few seconds)."""
    deadline = time.monotonic() + BOUNDED_S
    while True:
        response = httpx.get(base + DIAGNOSTICS_PATH, timeout=10)
        if holds(response.json().get("dependencies", {})):
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def assert_dependency_unavailable(response: httpx.Response) -> States:
    assert response.status_code == 503, response.text
    body = response.json()
    assert {"detail", "error_code", "status_code"} <= body.keys()
    assert (body["error_code"], body["status_code"]) == ("DEPENDENCY_UNAVAILABLE", 503)
    states: States = body["dependencies"]
    return states


def gauge(stack: Stack, module: str, dependency: str) -> float | None:
    text = httpx.get(metrics_url(stack, module) + "/metrics", timeout=10).text
    wanted = {"service": service_label(module), "dependency": dependency}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "agentflow_dependency_up" and sample.labels == wanted:
                return sample.value
    return None


def wait_recovered(stack: Stack) -> None:
    """Until every process says all its dependencies answer again (the gateway last)."""
    for service in stack.services:
        service.wait_ready(timeout=90)


def failing(states: States) -> set[str]:
    return {name for name, state in states.items() if state != "ok"}


def failing_exactly(expected: set[str]) -> Callable[[States], bool]:
    return lambda states: failing(states) == expected


# -- the outages ------------------------------------------------------------------------------


def test_nats_outage_keeps_every_pod_ready(platform: Stack) -> None:
    stack = platform
    stack.nats.stop()
    try:
        for module, base in pods(stack).items():
            # The gateway also passes on what each upstream says of its own NATS.
            nats = {"nats"}
            if module == "services.gateway":
                nats |= {f"{name}.nats" for name in UPSTREAMS}
            response = diagnostics_when(base, failing_exactly(nats))
            assert_dependency_unavailable(response)
            assert gauge(stack, module, "nats") == 0.0, module
            if module in STORE_MODULES:
                assert gauge(stack, module, "store") == 1.0, module
        assert_pods_ready(stack)
        with stack.client() as client:
            assert client.get("/docs").status_code == 200
            assert client.get("/openapi.json").status_code == 200
        # ADR 0003's promise, now through the Ingress too: register and log in without NATS.
        user = stack.register()
        assert stack.login(user["username"], user["password"])
    finally:
        stack.nats.start()
        wait_recovered(stack)
    for module in pods(stack):
        assert gauge(stack, module, "nats") == 1.0, module


def test_store_outage_keeps_every_pod_ready(platform: Stack, postgres: PrivatePostgres) -> None:
    stack = platform
    bases = pods(stack)
    postgres.stop("fast")
    try:
        for module in STORE_MODULES:
            response = diagnostics_when(bases[module], failing_exactly({"store"}))
            assert assert_dependency_unavailable(response) == {"store": "failing", "nats": "ok"}
            assert gauge(stack, module, "store") == 0.0, module
        stores = {f"{name}.store" for name in UPSTREAMS}
        response = diagnostics_when(bases["services.gateway"], failing_exactly(stores))
        states = assert_dependency_unavailable(response)
        assert all(states[name] == "ok" for name in UPSTREAMS)  # each upstream answers
        assert_pods_ready(stack)
        with stack.client() as client:
            assert client.get("/docs").status_code == 200
            # The service answers for itself: a 503 the client may retry, in the error shape.
            refused = client.post("/api/v1/auth/register", json=new_user())
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_code"] == "STORE_UNAVAILABLE"
        assert refused.headers["retry-after"] == "1"
    finally:
        postgres.start()
        wait_recovered(stack)
    for module in STORE_MODULES:
        assert gauge(stack, module, "store") == 1.0, module
    stack.register()  # and the first request after succeeds, nothing restarted


def test_one_upstream_down_keeps_the_gateway_ready(platform: Stack) -> None:
    stack = platform
    client, _ = stack.user_client()  # logged in before auth goes away
    gateway = pods(stack)["services.gateway"]
    stack.auth.kill9()
    try:
        states = assert_dependency_unavailable(
            diagnostics_when(gateway, lambda s: s.get("auth") == "failing")
        )
        assert failing(states) == {"auth"}  # and no stale `auth.*` left behind
        assert gauge(stack, "services.gateway", "auth") == 0.0
        assert gauge(stack, "services.gateway", "workflows") == 1.0
        assert_pods_ready(stack, except_module="services.auth")
        with client:
            assert client.get("/docs").status_code == 200
            assert client.get("/api/v1/workflows").status_code == 200  # other upstreams serve
            login = client.post("/api/v1/auth/login", data={"username": "a", "password": "b"})
        assert login.status_code == 503
        assert login.json()["error_code"] == "UPSTREAM_UNAVAILABLE"
    finally:
        stack.auth.start()
        wait_recovered(stack)
    assert gauge(stack, "services.gateway", "auth") == 1.0
