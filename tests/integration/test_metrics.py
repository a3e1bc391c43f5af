"""Every process's /metrics tells what it did: executions, node runs, LLM calls and tokens,
data source queries, the node queue and the outbox relay."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_executions import W, create_workflow, wait_finished
from tests.support.stack import Stack
from tests.unit.workflow.builders import SEED_EXAMPLE


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= set(ls))


def test_a_run_and_a_query_show_up_in_the_metrics(stack: Stack, me: httpx.Client) -> None:
    workers = [f"http://127.0.0.1:{w.port}" for w in stack.workers]
    for url in workers:  # the probe Kubernetes uses, and what the worker says of NATS
        assert httpx.get(url + "/readyz").json() == {"status": "ready"}
        assert httpx.get(url + "/diagnostics").json()["dependencies"] == {"nats": "ok"}
    before = [samples(url) for url in workers]
    run = me.post(f"{W}/{create_workflow(me, copy.deepcopy(SEED_EXAMPLE))}/execute",
                  json={"input_data": {"text": "度量"}}).json()  # fmt: skip
    assert wait_finished(me, run["id"])["status"] == "completed"
    source = me.post("/api/v1/data-sources", json={"name": "j", "type": "json",
                                                   "config": {"data": [1, 2]}}).json()  # fmt: skip
    assert (
        me.post(f"/api/v1/data-sources/{source['id']}/query", json={"query": ""}).status_code == 200
    )
    assert me.post(f"/api/v1/data-sources/{source['id']}/test").json()["status"] == "success"

    after = [samples(url) for url in workers]

    def grown(name: str, **labels: str) -> float:
        return sum(total(a, name, **labels) - total(b, name, **labels)
                   for a, b in zip(after, before, strict=True))  # fmt: skip

    assert grown("agentflow_node_runs_total", node_type="llm", outcome="ok", runner="worker") == 1
    assert grown("agentflow_node_run_seconds_count", node_type="llm", runner="worker") == 1
    assert grown("agentflow_node_runs_total", node_type="start") == 0  # run inline, not here
    assert grown("agentflow_llm_calls_total", provider="deepseek", model="deepseek-chat",
                 outcome="ok") == 1  # fmt: skip
    assert grown("agentflow_llm_tokens_total", provider="deepseek", kind="completion") > 0

    executor = samples(stack.executor.base_url)
    assert total(executor, "agentflow_executions_total", event="completed") >= 1
    # Control nodes run inline in the executor api: counted there, by the orchestrator.
    assert total(executor, "agentflow_node_runs_total", node_type="start", outcome="ok",
                 runner="orchestrator") >= 1  # fmt: skip
    assert total(executor, "agentflow_node_run_seconds_count", node_type="end",
                 runner="orchestrator") >= 1  # fmt: skip
    assert total(executor, "agentflow_executions_total", event="created") >= 1
    deadline = time.monotonic() + 15  # the queue gauge is refreshed every few seconds
    while not (
        any(name == "agentflow_node_queue_messages" for name, _ in executor)
        and total(executor, "agentflow_node_queue_messages", state="pending") == 0
    ):
        assert time.monotonic() < deadline, "no node queue gauge, or work left in the queue"
        time.sleep(0.5)
        executor = samples(stack.executor.base_url)
    assert total(executor, "agentflow_outbox_lag_events", source="executor") >= 0
    assert any(name == "agentflow_outbox_lag_events" for name, _ in executor)

    datasources = samples(stack.datasources.base_url)
    assert total(datasources, "agentflow_datasource_queries_total", type="json", outcome="ok") >= 1
    assert total(datasources, "process_resident_memory_bytes") > 0
    gateway = samples(stack.gateway_metrics_url)  # not on the public port
    assert total(gateway, "agentflow_http_requests_total") > 0
    for labels in [dict(ls) for (n, ls) in gateway if n == "agentflow_http_requests_total"]:
        assert all(len(v) < 80 for v in labels.values())  # bounded: routes, not raw paths


DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
_METRIC = re.compile(r"\b((?:agentflow|process)_[a-z0-9_]+)\b")


def test_every_metric_the_dashboards_query_is_exported(stack: Stack, me: httpx.Client) -> None:
    # The workload above ran in this module's stack; run it again in case this test runs alone.
    test_a_run_and_a_query_show_up_in_the_metrics(stack, me)
    exported: set[str] = set()
    urls = [stack.gateway_metrics_url, stack.auth.base_url, stack.workflows.base_url,
            stack.executor.base_url, stack.datasources.base_url,
            *(f"http://127.0.0.1:{w.port}" for w in stack.workers)]  # fmt: skip
    for url in urls:
        exported |= {name for name, _ in samples(url)}
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert len(boards) >= 4
    for board in boards:
        dashboard = json.loads(board.read_text())
        assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
        queried = {
            name
            for panel in dashboard["panels"]
            for target in panel["targets"]
            for name in _METRIC.findall(target["expr"])
        }
        assert queried, board.name
        missing = sorted(queried - exported)
        assert not missing, f"{board.name} queries metrics nobody exports: {missing}"
