"""Per-user limits on starting runs: a user at their limit gets 429, another user does not."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import (
    BRANCHING,
    WAITS_FOR_A_WORKER,
    E,
    W,
    create_workflow,
    edge,
    node,
    wait_finished,
)
from tests.integration.test_llm_and_agents import requests_with
from tests.support.events import wait_for_node_result, wait_handled_by_orchestrator
from tests.support.fake_llm import FakeLLM
from tests.support.platform_fixtures import module_platform
from tests.support.stack import Stack
from tests.support.stores import BACKENDS

LIMITS = {
    "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "2",
    "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "4",
}


def start(client: httpx.Client, workflow_id: str) -> httpx.Response:
    return client.post(f"{W}/{workflow_id}/execute", json={"input_data": {"text": "limits"}})


def wait_running(client: httpx.Client, execution_id: str) -> None:
    deadline = time.monotonic() + 10
    while client.get(f"{E}/{execution_id}/status").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_one_user_at_their_limits_does_not_stop_another(fresh_stack) -> None:
    stack: Stack = fresh_stack(LIMITS).start()
    flooder, _ = stack.user_client()
    other, _ = stack.user_client()
    with flooder, other:
        held = create_workflow(flooder, WAITS_FOR_A_WORKER)
        quick = create_workflow(flooder, BRANCHING)
        for worker in stack.workers:
            worker.kill9()  # runs wait at their model node: they stay running
        first, second = start(flooder, held).json(), start(flooder, held).json()
        for run in (first, second):
            wait_running(flooder, run["id"])

        refused = start(flooder, held)
        assert_error(refused, 429, "TOO_MANY_RUNNING_EXECUTIONS")
        assert refused.headers["retry-after"] == "5"
        assert "2" in refused.json()["detail"]
        theirs = start(other, create_workflow(other, WAITS_FOR_A_WORKER))
        assert theirs.status_code == 201, theirs.text  # another user is not held back

        for worker in stack.workers:
            worker.start()
        for run in (first, second):
            assert wait_finished(flooder, run["id"])["status"] == "completed"
        assert wait_finished(other, theirs.json()["id"])["status"] == "completed"

        # Two finished runs free two places; the rate (4 a minute, the refused one not
        # counted) is what stops the fifth start.
        for _ in range(2):
            quick_run = start(flooder, quick)
            assert quick_run.status_code == 201
            wait_finished(flooder, quick_run.json()["id"])  # so it is the rate that refuses
        limited = start(flooder, quick)
        assert_error(limited, 429, "EXECUTION_RATE_LIMITED")
        assert limited.headers["retry-after"] == "60"
        assert start(other, create_workflow(other, BRANCHING)).status_code == 201
        listed = flooder.get(E, params={"limit": 100}).json()
        assert len(listed) == 4  # nothing refused was stored


def test_a_run_longer_than_the_maximum_run_time_is_failed(fresh_stack) -> None:
    stack: Stack = fresh_stack({"AGENTFLOW_MAX_EXECUTION_SECONDS": "2"}).start()
    client, _ = stack.user_client()
    with client:
        held = create_workflow(client, WAITS_FOR_A_WORKER)
        for worker in stack.workers:
            worker.kill9()  # the model node never gets an answer
        run = start(client, held).json()
        record = wait_finished(client, run["id"], timeout=30)
        assert record["status"] == "failed"
        assert "2" in record["error"]["message"]
        assert record["nodes"]["ask"]["status"] == "running"  # it was stopped, not finished
        for worker in stack.workers:
            worker.start()  # the late answer changes nothing
        late = wait_for_node_result(stack.nats.url, run["id"], "ask")
        assert late.envelope["ok"], late.envelope
        wait_handled_by_orchestrator(stack.nats.url, late)
        assert client.get(f"{E}/{run['id']}").json()["status"] == "failed"
        logs = client.get(f"/api/v1/execution-logs/executions/{run['id']}").json()["logs"]
        assert logs[-1]["level"] == "error"


@pytest.fixture(scope="module", params=BACKENDS)
def budget_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    """A platform whose runs may spend 30 model tokens each, for the budget tests (they only
    add runs of their own users, so they share it)."""
    budget = {"AGENTFLOW_MAX_TOKENS_PER_EXECUTION": "30"}
    with module_platform(request, tmp_path_factory, fake_llm, budget, workers=1) as running:
        yield running


def test_a_run_stops_calling_models_once_its_token_budget_is_spent(
    budget_stack: Stack, fake_llm: FakeLLM
) -> None:
    stack = budget_stack
    marker = f"budget-{uuid.uuid4().hex[:8]}"
    asks = ["ask-1", "ask-2", "ask-3"]
    chain = {
        "name": "三次提问",
        "nodes": [
            node("start-1", "start"),
            *(node(a, "llm", provider="deepseek", prompt=f"{marker} {{input.text}}") for a in asks),
            node("end-1", "end"),
        ],
        "edges": [edge(a, b) for a, b in zip(["start-1", *asks], [*asks, "end-1"], strict=True)],
    }
    words = " ".join(["word"] * 10)  # each call spends about 2 × 11 tokens (fake: words)
    client, _ = stack.user_client()
    with client:
        run = client.post(
            f"{W}/{create_workflow(client, chain)}/execute", json={"input_data": {"text": words}}
        ).json()
        record = wait_finished(client, run["id"], timeout=60)
    assert record["status"] == "failed"
    nodes = record["nodes"]
    assert [nodes[a]["status"] for a in asks] == ["completed", "completed", "failed"]
    first = nodes["ask-1"]["output"]["usage"]["total_tokens"]
    spent = first + nodes["ask-2"]["output"]["usage"]["total_tokens"]
    assert f"{spent}" in nodes["ask-3"]["error"]
    assert "30" in record["error"]["message"]
    sent = requests_with(fake_llm, marker)
    assert len(sent) == 2  # the third call never reached the provider
    assert "max_tokens" not in sent[0]["body"] or sent[0]["body"]["max_tokens"] <= 30
    assert sent[1]["body"]["max_tokens"] == 30 - first  # asked for no more than was left


def test_an_agent_stops_turning_once_the_budget_is_spent(
    budget_stack: Stack, fake_llm: FakeLLM
) -> None:
    stack = budget_stack
    marker = f"agent-budget-{uuid.uuid4().hex[:8]}"
    calls = " ".join('[[call=calculator:{"expression": "1+1"}]]' for _ in range(4))
    padding = " ".join(["word"] * 30)  # the first turn alone spends more than 30 tokens
    agent = node(
        "agent-1", "agent", prompt=f"{marker} {padding} {calls}", tools=[{"type": "calculator"}]
    )
    flow = {
        "name": "预算内的智能体",
        "nodes": [node("start-1", "start"), agent, node("end-1", "end")],
        "edges": [edge("start-1", "agent-1"), edge("agent-1", "end-1")],
    }
    client, _ = stack.user_client()
    with client:
        run = client.post(f"{W}/{create_workflow(client, flow)}/execute").json()
        record = wait_finished(client, run["id"], timeout=60)
    assert record["status"] == "failed"
    assert "30" in record["nodes"]["agent-1"]["error"]
    assert len(requests_with(fake_llm, marker)) == 1  # no second turn
