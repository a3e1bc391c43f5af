"""Running workflows through the gateway: orchestrator in the executor, nodes on 2 workers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.support.events import (
    wait_for_events,
    wait_for_node_result,
    wait_handled_by_orchestrator,
)
from tests.support.stack import Stack

W = "/api/v1/workflows"
E = "/api/v1/executions"


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def node(node_id: str, node_type: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0}, "data": data}


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": f"{source}->{target}", "source": source, "target": target}
    if handle:
        found["sourceHandle"] = handle
    return found


BRANCHING: dict[str, Any] = {
    "name": "分支处理",
    "nodes": [
        node("start-1", "start"),
        node(
            "input-1",
            "input",
            fields=[
                {"name": "text", "type": "string", "required": True},
                {"name": "lang", "type": "string", "default": "en"},
            ],
        ),
        node("t-1", "transform", template="{input.text}!"),
        node("condition-1", "condition", expression="len({value}) > 3"),
        node("output-long", "output", mapping={"shout": "{t-1}", "lang": "{input.lang}"}),
        node("output-short", "output", mapping={"short": "{t-1}"}),
        node("end-1", "end"),
    ],
    "edges": [
        edge("start-1", "input-1"),
        edge("input-1", "t-1"),
        edge("t-1", "condition-1"),
        edge("condition-1", "output-long", "true"),
        edge("condition-1", "output-short", "false"),
        edge("output-long", "end-1"),
        edge("output-short", "end-1"),
    ],
}


# BRANCHING behind a model call: control nodes run in the executor api itself, so a model
# node is what waits for a worker (the fake LLM's answer is not used further on).
WAITS_FOR_A_WORKER: dict[str, Any] = {
    **BRANCHING,
    "name": "先问模型再分支",
    "nodes": [
        *BRANCHING["nodes"],
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}"),
    ],
    "edges": [
        edge("start-1", "ask"),
        edge("ask", "input-1"),
        *(e for e in BRANCHING["edges"] if e["source"] != "start-1"),
    ],
}


def create_workflow(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post(W, json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_finished(client: httpx.Client, execution_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"{E}/{execution_id}/status").json()
        assert 0 <= state["progress"] <= 100
        if state["status"] in ("completed", "failed", "cancelled"):
            record: dict[str, Any] = client.get(f"{E}/{execution_id}").json()
            return record
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not finish: {state}")


def test_a_workflow_runs_to_completion_along_the_branch_taken(
    stack: Stack, me: httpx.Client
) -> None:
    wid = create_workflow(me, BRANCHING)
    started = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "hello"}})
    assert started.status_code == 201, started.text
    body = started.json()
    assert (body["workflow_id"], body["status"]) == (wid, "pending")
    assert body["task_id"]
    record = wait_finished(me, body["id"])
    assert record["status"] == "completed", record
    assert record["output_data"] == {"shout": "hello!", "lang": "en"}
    assert record["progress"] == 100
    assert record["workflow_version"] == 1
    assert record["execution_time"] >= 0
    nodes = record["nodes"]
    assert nodes["condition-1"]["branch"] == "true"
    assert nodes["output-short"]["status"] == "skipped"
    assert nodes["t-1"]["output"] == "hello!"
    assert {n["status"] for k, n in nodes.items() if k != "output-short"} == {"completed"}
    events = wait_for_events(stack.nats.url, f"events.execution.{body['id']}.>", at_least=10)
    types = [e.envelope["type"] for e in events]
    assert types[0] == "ExecutionCreated"
    assert types[-1] == "ExecutionCompleted"
    assert "NodeSkipped" in types


def test_the_other_branch_and_the_executions_endpoint(me: httpx.Client) -> None:
    wid = create_workflow(me, BRANCHING)
    started = me.post(E, json={"workflow_id": wid, "input_data": {"text": "hi", "lang": "zh"}})
    assert started.status_code == 201, started.text
    record = wait_finished(me, started.json()["id"])
    assert record["output_data"] == {"short": "hi!"}
    assert record["nodes"]["output-long"]["status"] == "skipped"


def test_an_execution_pins_the_version_it_ran(me: httpx.Client) -> None:
    wid = create_workflow(me, BRANCHING)
    first = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "hello"}}).json()
    nodes = [dict(n) for n in BRANCHING["nodes"]]
    nodes[2] = node("t-1", "transform", template="{input.text}?")
    me.put(f"{W}/{wid}", json={"nodes": nodes}).raise_for_status()
    second = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "hello"}}).json()
    one, two = wait_finished(me, first["id"]), wait_finished(me, second["id"])
    assert (one["workflow_version"], two["workflow_version"]) == (1, 2)
    assert two["output_data"]["shout"] == "hello?"


def test_bad_input_data_fails_the_run_clearly(me: httpx.Client) -> None:
    wid = create_workflow(me, BRANCHING)
    started = me.post(f"{W}/{wid}/execute", json={"input_data": {"lang": "fr"}}).json()
    record = wait_finished(me, started["id"])
    assert record["status"] == "failed"
    assert record["error"]["node_id"] == "input-1"
    assert "text" in record["error"]["message"]
    assert record["nodes"]["input-1"]["status"] == "failed"
    assert record["output_data"] is None


def test_a_failure_can_follow_the_error_edge(me: httpx.Client) -> None:
    body = {
        "name": "错误分支",
        "nodes": [
            node("start-1", "start"),
            node("risky", "transform", mode="jmespath", expression="abs(@)", on_error="error_edge"),
            node("ok", "output", mapping={"ok": "{risky}"}),
            node("fallback", "output", mapping={"failed": "{risky.error}"}),
            node("end-1", "end"),
        ],
        "edges": [
            edge("start-1", "risky"),
            edge("risky", "ok"),
            edge("risky", "fallback", "error"),
            edge("ok", "end-1"),
            edge("fallback", "end-1"),
        ],
    }
    wid = create_workflow(me, body)
    started = me.post(f"{W}/{wid}/execute", json={"input_data": {"x": 1}}).json()
    record = wait_finished(me, started["id"])
    assert record["status"] == "completed", record
    failure = record["output_data"]["failed"]
    assert "JMESPath" in failure["message"]
    assert (failure["type"], failure["attempts"]) == ("transform", 1)
    assert record["nodes"]["ok"]["status"] == "skipped"


def test_refusals(stack: Stack, me: httpx.Client) -> None:
    invalid = create_workflow(me, {"name": "坏的", "nodes": [node("x", "start")], "edges": []})
    body = assert_error(me.post(f"{W}/{invalid}/execute", json={}), 422, "INVALID_WORKFLOW")
    assert body["errors"]
    assert_error(me.post(f"{W}/{uuid.uuid4()}/execute", json={}), 404, "WORKFLOW_NOT_FOUND")
    wid = create_workflow(me, BRANCHING)
    mine = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "hello"}}).json()
    other, _ = stack.user_client()
    with other:
        assert_error(other.post(f"{W}/{wid}/execute", json={}), 404, "WORKFLOW_NOT_FOUND")
        assert_error(other.get(f"{E}/{mine['id']}"), 404, "EXECUTION_NOT_FOUND")
        assert_error(other.get(f"{E}/{mine['id']}/status"), 404, "EXECUTION_NOT_FOUND")
    assert_error(me.get(f"{E}/{uuid.uuid4()}"), 404, "EXECUTION_NOT_FOUND")
    assert_error(me.get(f"{E}/not-an-id/status"), 404, "EXECUTION_NOT_FOUND")
    with stack.admin_client() as admin:
        assert admin.get(f"{E}/{mine['id']}").status_code == 200


L = "/api/v1/execution-logs/executions"


def test_logs_filters_and_summary(stack: Stack, me: httpx.Client) -> None:
    wid = create_workflow(me, BRANCHING)
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "hello"}}).json()
    wait_finished(me, run["id"])
    page = me.get(f"{L}/{run['id']}").json()
    assert (page["skip"], page["limit"]) == (0, 100)
    logs = page["logs"]
    assert page["total"] == len(logs) > 0
    assert set(logs[0]) == {
        "id", "node_id", "node_type", "level", "message", "timestamp", "duration_ms"
    }  # fmt: skip
    assert [line["timestamp"] for line in logs] == sorted(line["timestamp"] for line in logs)
    ran = {"start-1", "input-1", "t-1", "condition-1", "output-long", "end-1"}
    assert {line["node_id"] for line in logs} == ran  # the skipped branch has no lines
    started = [line for line in logs if line["message"] == "节点开始执行"]
    assert len(started) == len(ran)
    only_t1 = me.get(f"{L}/{run['id']}", params={"node_id": "t-1"}).json()
    assert {line["node_id"] for line in only_t1["logs"]} == {"t-1"}
    assert only_t1["total"] == 2
    assert me.get(f"{L}/{run['id']}", params={"level": "error"}).json()["total"] == 0
    second = me.get(f"{L}/{run['id']}", params={"skip": 1, "limit": 2}).json()
    assert second["logs"] == logs[1:3]
    assert second["total"] == page["total"]

    summary = me.get(f"{L}/{run['id']}/summary").json()
    assert summary["total_logs"] == page["total"]
    assert summary["level_stats"] == {
        "info": page["total"], "warn": 0, "error": 0, "debug": 0
    }  # fmt: skip
    by_node = {stats["node_id"]: stats for stats in summary["node_stats"]}
    assert set(by_node) == ran
    assert by_node["t-1"]["log_count"] == 2
    assert by_node["t-1"]["node_type"] == "transform"
    assert summary["error_logs"] == []

    failed = me.post(f"{W}/{wid}/execute", json={"input_data": {}}).json()
    wait_finished(me, failed["id"])
    errors = me.get(f"{L}/{failed['id']}/summary").json()
    assert errors["level_stats"]["error"] == 1
    assert errors["error_logs"][0]["node_id"] == "input-1"
    assert_error(me.get(f"{L}/{run['id']}", params={"level": "fatal"}), 422, "VALIDATION_ERROR")
    other, _ = stack.user_client()
    with other:
        assert_error(other.get(f"{L}/{run['id']}"), 404, "EXECUTION_NOT_FOUND")
        assert_error(other.get(f"{L}/{run['id']}/summary"), 404, "EXECUTION_NOT_FOUND")


def test_list_executions_filters(stack: Stack, me: httpx.Client) -> None:
    wid = create_workflow(me, BRANCHING)
    other_wid = create_workflow(me, {**BRANCHING, "name": f"另一个 {uuid.uuid4().hex[:6]}"})
    tag = uuid.uuid4().hex[:8]
    done = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": f"hello {tag}"}}).json()
    bad = me.post(f"{W}/{wid}/execute", json={"input_data": {"note": tag}}).json()
    elsewhere = me.post(f"{W}/{other_wid}/execute", json={"input_data": {"text": "hello"}}).json()
    for run in (done, bad, elsewhere):
        wait_finished(me, run["id"])
    listed = me.get(E, params={"workflow_id": wid}).json()
    assert [item["id"] for item in listed] == [bad["id"], done["id"]]  # newest first
    item = listed[1]
    assert item["status"] == "completed"
    assert item["input_data"] == {"text": f"hello {tag}"}
    assert item["output_data"] == {"shout": f"hello {tag}!", "lang": "en"}
    assert item["execution_time"] >= 0
    assert {"created_at", "workflow_id"} <= item.keys()
    failed = me.get(E, params={"workflow_id": wid, "status": "failed"}).json()
    assert [i["id"] for i in failed] == [bad["id"]]
    assert {i["id"] for i in me.get(E, params={"search": tag}).json()} == {done["id"], bad["id"]}
    assert [
        i["id"] for i in me.get(E, params={"workflow_id": wid, "limit": 1, "skip": 1}).json()
    ] == [done["id"]]
    assert_error(me.get(E, params={"limit": 101}), 422, "VALIDATION_ERROR")
    assert_error(me.get(E, params={"status": "exploded"}), 422, "VALIDATION_ERROR")
    other, _ = stack.user_client()
    with other:
        assert other.get(E).json() == []
    with stack.admin_client() as admin:
        everyone = {i["id"] for i in admin.get(E, params={"search": tag}).json()}
        assert everyone == {done["id"], bad["id"]}


def test_a_run_survives_the_api_process_being_killed(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, WAITS_FOR_A_WORKER)
        for worker in stack.workers:
            worker.kill9()  # no worker: the run stops at its model node
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "durable"}}).json()
        deadline = time.monotonic() + 10
        while client.get(f"{E}/{run['id']}/status").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        stack.executor.kill9()
        stack.executor.start()
        stack.executor.wait_ready()
        for worker in stack.workers:
            worker.start()
        record = wait_finished(client, run["id"])
    assert record["status"] == "completed", record
    assert record["output_data"] == {"shout": "durable!", "lang": "en"}
    assert all(node["attempt"] <= 1 for node in record["nodes"].values())


def test_cancel_stops_a_run_and_ignores_late_results(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, WAITS_FOR_A_WORKER)
        for worker in stack.workers:
            worker.kill9()
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "stop"}}).json()
        deadline = time.monotonic() + 10
        while client.get(f"{E}/{run['id']}/status").json()["status"] != "running":
            assert time.monotonic() < deadline  # the model node's command waits for a worker
            time.sleep(0.05)
        cancelled = client.post(f"{E}/{run['id']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        for worker in stack.workers:
            worker.start()  # the queued command runs; its result must change nothing
        late = wait_for_node_result(stack.nats.url, run["id"], "ask")
        assert late.envelope["ok"], late.envelope  # an answer that would have carried it on
        wait_handled_by_orchestrator(stack.nats.url, late)
        record = client.get(f"{E}/{run['id']}").json()
        assert record["status"] == "cancelled"
        assert record["nodes"]["ask"]["status"] == "running"  # its late result changed nothing
        assert "input-1" not in record["nodes"]
        assert_error(client.post(f"{E}/{run['id']}/cancel"), 409, "EXECUTION_FINISHED")
        logs = client.get(f"/api/v1/execution-logs/executions/{run['id']}").json()["logs"]
        assert logs[-1]["level"] == "warn"
        other, _ = stack.user_client()
        with other:
            assert_error(other.post(f"{E}/{run['id']}/cancel"), 404, "EXECUTION_NOT_FOUND")


def test_resume_carries_a_failed_run_on_without_rerunning_completed_nodes(
    me: httpx.Client,
) -> None:
    wid = create_workflow(me, BRANCHING)
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"lang": "fr"}}).json()
    first = wait_finished(me, run["id"])
    assert first["status"] == "failed"
    resumed = me.post(f"{E}/{run['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "running"
    deadline = time.monotonic() + 30
    while True:
        record = me.get(f"{E}/{run['id']}").json()
        if record["status"] == "failed" and record["nodes"]["input-1"]["attempt"] == 2:
            break
        assert time.monotonic() < deadline, record
        time.sleep(0.1)
    # The input is pinned, so the input node fails again, on its second attempt; the start
    # node that had completed was not run again.
    assert record["nodes"]["start-1"]["attempt"] == 1
    logs = me.get(f"/api/v1/execution-logs/executions/{run['id']}", params={"node_id": "start-1"})
    assert [line["message"] for line in logs.json()["logs"]].count("节点开始执行") == 1
    assert record["nodes"]["t-1"]["status"] == "skipped"
    done = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "fine"}}).json()
    wait_finished(me, done["id"])
    assert_error(me.post(f"{E}/{done['id']}/resume"), 409, "EXECUTION_NOT_RESUMABLE")
