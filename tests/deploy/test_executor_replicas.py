"""The executor api scales out (ADR 0009): at least two replicas everywhere, each its own
replica in the partition leases, reached by the gateway through a load-balanced Service."""

from __future__ import annotations

import re

import pytest

from services.executor.settings import ExecutorSettings
from tests.deploy.test_manifests import OVERLAYS, config_maps, find, named

API = "executor-api"


def shared_config(overlay: str) -> dict[str, str]:
    (config,) = [d for n, d in config_maps(overlay).items() if n.startswith("agentflow-config")]
    return config


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_executor_api_runs_at_least_two_replicas_and_no_more_than_its_partitions(
    overlay: str,
) -> None:
    hpa = find(overlay, "HorizontalPodAutoscaler", API)["spec"]
    partitions = int(
        shared_config(overlay).get(
            "AGENTFLOW_EXECUTION_PARTITIONS",
            ExecutorSettings.model_fields["execution_partitions"].default,
        )
    )
    assert 2 <= hpa["minReplicas"] <= hpa["maxReplicas"] <= partitions


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_replica_has_a_name_of_its_own(overlay: str) -> None:
    # One value for every pod would make them all one replica in the leases.
    assert "AGENTFLOW_REPLICA_ID" not in shared_config(overlay)
    deployment = find(overlay, "Deployment", API)
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert "AGENTFLOW_REPLICA_ID" not in {e["name"] for e in container.get("env", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_reaches_the_executor_through_its_load_balanced_service(overlay: str) -> None:
    url = shared_config(overlay)["AGENTFLOW_EXECUTOR_URL"]
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", url)
    assert match, url
    assert match[1] == API
    service = named(overlay, "Service")[API]["spec"]
    assert service.get("clusterIP") != "None"  # headless would hand out one pod's address
    assert service.get("type", "ClusterIP") == "ClusterIP"
    assert service["selector"] == {"app.kubernetes.io/name": API}
