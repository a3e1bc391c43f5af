"""llm and agent nodes through the gateway, answered by the local OpenAI-compatible server."""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_executions import W, create_workflow, edge, node, wait_finished
from tests.integration.test_live_updates import receive_all, socket_url, token_of
from tests.support.events import handled_by_orchestrator, wait_for_events, wait_for_node_result
from tests.support.fake_llm import FakeLLM
from tests.support.http_servers import QuietHandler, serving
from tests.support.platform_fixtures import LLM_KEY
from tests.support.processes import wait_for_log
from tests.support.stack import Stack
from tests.unit.workflow.builders import SEED_EXAMPLE

L = "/api/v1/execution-logs/executions"
_DIRECTIVE = re.compile(r"\[\[.*?\]\]")


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def llm_flow(**llm: Any) -> dict[str, Any]:
    return {
        "name": "LLM 流程",
        "nodes": [node("start-1", "start"), node("llm-1", "llm", **llm), node("end-1", "end")],
        "edges": [edge("start-1", "llm-1"), edge("llm-1", "end-1")],
    }


def requests_with(fake_llm: FakeLLM, marker: str) -> list[dict[str, Any]]:
    return fake_llm.requests_with(marker)


def start_slow_run(client: httpx.Client, fake_llm: FakeLLM, delay: float) -> tuple[str, str]:
    """Run the seed example with an LLM call of `delay` seconds; return once the call is
    under way, with the run's id and the marker that finds its requests."""
    marker = uuid.uuid4().hex[:8]
    wid = create_workflow(client, copy.deepcopy(SEED_EXAMPLE))
    body = {"input_data": {"text": f"{marker} [[delay={delay}]]"}}
    run = client.post(f"{W}/{wid}/execute", json=body).json()
    deadline = time.monotonic() + 20
    while not requests_with(fake_llm, marker):
        assert time.monotonic() < deadline, "the LLM call never started"
        time.sleep(0.05)
    return str(run["id"]), marker


def test_the_seed_example_runs_end_to_end_and_is_watched_live(
    stack: Stack, me: httpx.Client, fake_llm: FakeLLM
) -> None:
    wid = create_workflow(me, copy.deepcopy(SEED_EXAMPLE))
    marker = uuid.uuid4().hex[:8]
    text = f"今天天气很好,适合散步 {marker} [[delay=1]]"
    run_id = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": text}}).json()["id"]
    messages = receive_all(socket_url(stack, run_id, token_of(me)))
    record = wait_finished(me, run_id)
    assert record["status"] == "completed", record

    prompt = "请总结以下文本:" + json.dumps({"text": text}, ensure_ascii=False)
    answer = "ECHO: " + _DIRECTIVE.sub("", prompt).strip()
    output = record["output_data"]
    assert output["text"] == answer
    assert (output["model"], output["finish_reason"]) == ("deepseek-chat", "stop")
    assert output["usage"]["total_tokens"] == (
        output["usage"]["prompt_tokens"] + output["usage"]["completion_tokens"]
    )
    assert output["usage"]["completion_tokens"] > 0

    sent = requests_with(fake_llm, marker)
    assert len(sent) == 1
    assert sent[0]["authorization"] == f"Bearer {LLM_KEY}"
    assert sent[0]["body"]["model"] == "deepseek-chat"
    assert sent[0]["body"]["messages"] == [{"role": "user", "content": prompt}]

    kinds = [m["type"] for m in messages]
    assert kinds[0] == "status"
    assert kinds[-1] == "completed"
    assert messages[-1]["data"]["output_data"] == output
    chunks = [m["data"] for m in messages if m["type"] == "llm_chunk"]
    assert len(chunks) > 1
    assert "".join(c["text"] for c in chunks) == answer
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    assert {c["node_id"] for c in chunks} == {"llm-1"}
    # The socket connects while llm-1 runs (or just before it starts): either the first
    # status names it, or its node_started comes before its chunks.
    started = [i for i, m in enumerate(messages)
               if m["type"] == "node_started" and m["data"]["node_id"] == "llm-1"]  # fmt: skip
    if started:
        assert started[0] < kinds.index("llm_chunk")
    else:
        assert messages[0]["data"]["current_node"] == "llm-1"
    assert kinds.index("llm_chunk") < kinds.index("completed")
    logs_seen = [m["data"]["message"] for m in messages if m["type"] == "log"]
    assert any("tokens" in line for line in logs_seen)

    logs = me.get(f"{L}/{run_id}", params={"node_id": "llm-1"}).json()
    usage_line = f"LLM deepseek/deepseek-chat: {output['usage']['total_tokens']} tokens"
    assert usage_line in [line["message"] for line in logs["logs"]]
    summary = me.get(f"{L}/{run_id}/summary").json()
    stats = {n["node_id"]: n for n in summary["node_stats"]}
    assert stats["llm-1"]["log_count"] == logs["total"]
    assert stats["llm-1"]["node_type"] == "llm"
    assert summary["level_stats"]["info"] == summary["total_logs"]
    assert summary["error_logs"] == []


def test_every_llm_option_reaches_the_provider(me: httpx.Client, fake_llm: FakeLLM) -> None:
    marker = uuid.uuid4().hex[:8]
    flow = llm_flow(
        prompt=f"分类 {marker}: {{input.text}}",
        system_prompt="你是分类器,语言 {input.lang}",
        temperature=0.2,
        max_tokens=64,
        top_p=0.9,
        response_format="json",
        stream=False,
    )
    shaped = {"echo": "{llm-1.json.echo}", "tokens": "{llm-1.usage.total_tokens}"}
    flow["nodes"][2] = node("end-1", "end", output=shaped)
    wid = create_workflow(me, flow)
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "好评", "lang": "zh"}})
    record = wait_finished(me, run.json()["id"])
    assert record["status"] == "completed", record
    body = requests_with(fake_llm, marker)[0]["body"]
    assert body["messages"] == [
        {"role": "system", "content": "你是分类器,语言 zh"},
        {"role": "user", "content": f"分类 {marker}: 好评"},
    ]
    assert (body["temperature"], body["max_tokens"], body["top_p"]) == (0.2, 64, 0.9)
    assert body["response_format"] == {"type": "json_object"}
    assert not body.get("stream")
    assert record["output_data"]["echo"] == f"ECHO: 分类 {marker}: 好评"
    assert (
        record["output_data"]["tokens"]
        == record["nodes"]["llm-1"]["output"]["usage"]["total_tokens"]
    )


def test_rate_limits_and_server_errors_are_retried(me: httpx.Client, fake_llm: FakeLLM) -> None:
    key = uuid.uuid4().hex[:8]
    wid = create_workflow(me, llm_flow(prompt=f"hello [[fail=429x2 key={key}]]"))
    record = wait_finished(me, me.post(f"{W}/{wid}/execute", json={}).json()["id"])
    assert record["status"] == "completed", record
    assert record["output_data"]["text"] == "ECHO: hello"
    assert len(requests_with(fake_llm, key)) == 3  # two 429s answered by retries in the call

    key = uuid.uuid4().hex[:8]
    flow = llm_flow(prompt=f"down [[fail=500x99 key={key}]]",
                    retry={"max_attempts": 2, "backoff_seconds": 0.1})  # fmt: skip
    wid = create_workflow(me, flow)
    record = wait_finished(me, me.post(f"{W}/{wid}/execute", json={}).json()["id"])
    assert record["status"] == "failed"
    llm = record["nodes"]["llm-1"]
    assert (llm["status"], llm["attempt"]) == ("failed", 2)
    assert "500" in llm["error"]
    assert len(requests_with(fake_llm, key)) == 6  # 2 attempts x (1 call + 2 retries)
    logs = me.get(f"{L}/{record['id']}", params={"level": "warn"}).json()["logs"]
    assert any("第 1 次尝试失败" in line["message"] for line in logs)


def test_a_provider_that_is_not_configured_fails_the_node_clearly(me: httpx.Client) -> None:
    wid = create_workflow(me, llm_flow(provider="openai", prompt="hi"))
    record = wait_finished(me, me.post(f"{W}/{wid}/execute", json={}).json()["id"])
    assert record["status"] == "failed"
    assert record["error"]["node_id"] == "llm-1"
    assert "OPENAI_API_KEY" in record["nodes"]["llm-1"]["error"]


def test_a_node_base_url_never_receives_the_platform_key(
    me: httpx.Client, fake_llm: FakeLLM
) -> None:
    private = llm_flow(prompt="hi", base_url="http://10.1.2.3/v1")
    record = wait_finished(me, me.post(f"{W}/{create_workflow(me, private)}/execute").json()["id"])
    assert record["status"] == "failed"
    assert "10.1.2.3" in record["nodes"]["llm-1"]["error"]

    marker = uuid.uuid4().hex[:8]
    # The same server under another base URL (it also answers without /v1): a node, not the
    # operator, chose it, so the platform's key is not sent, and the server refuses the call.
    elsewhere = fake_llm.base_url.removesuffix("/v1")
    own = llm_flow(prompt=f"leak {marker}", base_url=elsewhere)
    record = wait_finished(me, me.post(f"{W}/{create_workflow(me, own)}/execute").json()["id"])
    sent = requests_with(fake_llm, marker)
    assert sent
    assert {r["authorization"] for r in sent} == {None}
    assert record["status"] == "failed"
    assert "401" in record["nodes"]["llm-1"]["error"]


class _Weather(QuietHandler):
    def do_GET(self) -> None:
        self.reply(200, {"city": "杭州", "temp": 21})


@pytest.fixture(scope="module")
def weather_url() -> Iterator[str]:
    with serving(_Weather) as url:
        yield f"{url}/weather"


def test_an_agent_calls_each_tool_and_answers(
    me: httpx.Client, fake_llm: FakeLLM, weather_url: str
) -> None:
    calls = (
        '[[call=calculator:{"expression": "6*7"}]] '
        f'[[call=http_request:{{"url": "{weather_url}"}}]] '
        '[[call=data_source_query:{"query": "select 1", "data_source_id": "ds-1"}]]'
    )
    agent = node(
        "agent-1",
        "agent",
        prompt=f"查天气并计算 {calls}",
        tools=[{"type": "calculator"}, {"type": "http_request"}, {"type": "data_source_query"}],
        max_iterations=5,
    )
    flow = {
        "name": "智能体",
        "nodes": [node("start-1", "start"), agent, node("end-1", "end")],
        "edges": [edge("start-1", "agent-1"), edge("agent-1", "end-1")],
    }
    record = wait_finished(me, me.post(f"{W}/{create_workflow(me, flow)}/execute").json()["id"])
    assert record["status"] == "completed", record
    output = record["output_data"]
    trace = output["tool_calls"]
    assert [c["tool"] for c in trace] == ["calculator", "http_request", "data_source_query"]
    assert [c["ok"] for c in trace] == [True, True, False]
    assert trace[0]["result"] == "42"
    weather = json.loads(trace[1]["result"])
    assert weather["status"] == 200
    assert json.loads(weather["body"]) == {"city": "杭州", "temp": 21}
    assert output["iterations"] == 4
    assert output["text"] == "TOOLS: " + " | ".join(c["result"] for c in trace)
    logs = me.get(f"{L}/{record['id']}", params={"node_id": "agent-1"}).json()["logs"]
    lines = [line["message"] for line in logs]
    assert any(line.startswith("tool calculator(") and "42" in line for line in lines)
    assert any(line.startswith("tool data_source_query(") for line in lines)


def test_an_agent_that_never_answers_stops_at_max_iterations(me: httpx.Client) -> None:
    calls = " ".join('[[call=calculator:{"expression": "1+1"}]]' for _ in range(5))
    agent = node("agent-1", "agent", prompt=f"算 {calls}", tools=[{"type": "calculator"}],
                 max_iterations=2)  # fmt: skip
    flow = {
        "name": "不收敛的智能体",
        "nodes": [node("start-1", "start"), agent, node("end-1", "end")],
        "edges": [edge("start-1", "agent-1"), edge("agent-1", "end-1")],
    }
    record = wait_finished(me, me.post(f"{W}/{create_workflow(me, flow)}/execute").json()["id"])
    assert record["status"] == "failed"
    assert "2" in record["nodes"]["agent-1"]["error"]
    logs = me.get(f"{L}/{record['id']}", params={"node_id": "agent-1"}).json()["logs"]
    assert sum(line["message"].startswith("tool calculator(") for line in logs) == 2


def test_a_loop_of_llm_calls_under_each_error_handling(me: httpx.Client, fake_llm: FakeLLM) -> None:
    for handling in ("continue", "collect", "stop"):
        key = uuid.uuid4().hex[:8]
        flow = {
            "name": f"循环 {handling}",
            "nodes": [
                node("start-1", "start"),
                node(
                    "loop-1",
                    "loop",
                    items_path="{input.fruits}",
                    item_variable="fruit",
                    error_handling=handling,
                    parallelism=2,
                    output={"fruit": "{fruit}", "intro": "{intro}"},
                ),
                {**node("intro", "llm", prompt="介绍{fruit}", stream=False), "parentId": "loop-1"},
                node("end-1", "end"),
            ],
            "edges": [edge("start-1", "loop-1"), edge("loop-1", "end-1")],
        }
        fruits = ["苹果", f"香蕉[[fail=400x9 key={key}]]", "橙子"]
        run = me.post(f"{W}/{create_workflow(me, flow)}/execute",
                      json={"input_data": {"fruits": fruits}}).json()  # fmt: skip
        record = wait_finished(me, run["id"])
        nodes = record["nodes"]
        assert nodes["intro[0]"]["output"]["text"] == "ECHO: 介绍苹果"
        assert nodes["intro[1]"]["status"] == "failed"
        if handling == "stop":
            assert record["status"] == "failed"
            assert "iteration 1 failed" in record["error"]["message"]
            continue
        assert record["status"] == "completed", record
        loop = nodes["loop-1"]["output"]
        assert loop["count"] == 3
        assert [e["index"] for e in loop["errors"]] == [1]
        intros = [r.get("intro") or r.get("error", {}).get("index") for r in loop["results"]]
        if handling == "continue":
            assert intros == ["ECHO: 介绍苹果", "ECHO: 介绍橙子"]
        else:
            assert intros == ["ECHO: 介绍苹果", 1, "ECHO: 介绍橙子"]


def test_a_worker_killed_mid_llm_call_loses_nothing(fresh_stack: Any, fake_llm: FakeLLM) -> None:
    # A short ack wait: a dead worker's node is handed on after 3 s. The call takes 4 s, so
    # only heartbeats keep a healthy worker's node from being handed on while it runs.
    stack: Stack = fresh_stack({"AGENTFLOW_NODE_ACK_WAIT_S": "3"}).start()
    client, _ = stack.user_client()
    with client:
        run_id, marker = start_slow_run(client, fake_llm, 4)
        for worker in stack.workers:
            worker.kill9()  # whichever worker holds the call dies with it
        for worker in stack.workers:
            worker.start()
        record = wait_finished(client, run_id, timeout=60)
        assert record["status"] == "completed", record
        assert record["output_data"]["text"].startswith("ECHO: 请总结以下文本:")
        assert marker in record["output_data"]["text"]
        assert record["nodes"]["llm-1"]["attempt"] == 1  # handed on, not retried
        assert len(requests_with(fake_llm, marker)) == 2  # the killed call and the one after
        events = wait_for_events(stack.nats.url, f"events.execution.{run_id}.>", at_least=5)
        completed = [e for e in events if e.envelope["type"] == "NodeCompleted"
                     and e.envelope["data"]["run_key"] == "llm-1"]  # fmt: skip
        assert len(completed) == 1


def test_a_node_no_worker_can_finish_fails_instead_of_circling(
    fresh_stack: Any, fake_llm: FakeLLM
) -> None:
    env = {"AGENTFLOW_NODE_ACK_WAIT_S": "2", "AGENTFLOW_NODE_MAX_DELIVERIES": "1"}
    stack: Stack = fresh_stack(env).start()
    client, _ = stack.user_client()
    with client:
        run_id, marker = start_slow_run(client, fake_llm, 30)
        for worker in stack.workers:
            worker.kill9()
        for worker in stack.workers:
            worker.start()
        record = wait_finished(client, run_id, timeout=60)
        assert record["status"] == "failed"
        assert "1" in record["nodes"]["llm-1"]["error"]
        assert len(requests_with(fake_llm, marker)) == 1  # given up on, not run again


def test_a_node_timeout_is_a_retryable_failure_and_continue_carries_on(
    me: httpx.Client, fake_llm: FakeLLM
) -> None:
    marker = uuid.uuid4().hex[:8]
    flow = llm_flow(
        prompt=f"slow {marker} [[delay=5]]",
        timeout=1,
        retry={"max_attempts": 2, "backoff_seconds": 0},
        on_error="continue",
        default_output={"text": "稍后再试"},
    )
    record = wait_finished(me, me.post(f"{W}/{create_workflow(me, flow)}/execute").json()["id"])
    assert record["status"] == "completed", record
    assert record["output_data"] == {"text": "稍后再试"}
    llm = record["nodes"]["llm-1"]
    assert (llm["status"], llm["attempt"]) == ("completed", 2)
    assert len(requests_with(fake_llm, marker)) == 2
    errors = me.get(f"{L}/{record['id']}", params={"level": "error"}).json()["logs"]
    assert any("1s" in line["message"] or "1 秒" in line["message"] for line in errors)


def test_the_api_process_killed_mid_llm_call_loses_nothing(
    fresh_stack: Any, fake_llm: FakeLLM
) -> None:
    stack: Stack = fresh_stack().start()
    client, _ = stack.user_client()
    with client:
        run_id, marker = start_slow_run(client, fake_llm, 3)
        stack.executor.kill9()  # the result arrives while nobody is there to record it
        assert [c["ended"] for c in requests_with(fake_llm, marker)] == [None], "ended too soon"
        fake_llm.wait_ended(marker)
        result = wait_for_node_result(stack.nats.url, run_id, "llm-1")
        assert result.envelope["ok"], result.envelope
        assert not handled_by_orchestrator(stack.nats.url, result)  # it waits for the api
        stack.executor.start()
        record = wait_finished(client, run_id, timeout=60)
        assert record["status"] == "completed", record
        assert marker in record["output_data"]["text"]
        assert len(requests_with(fake_llm, marker)) == 1  # the call was not paid for twice


def test_a_run_completes_across_a_nats_restart(fresh_stack: Any, fake_llm: FakeLLM) -> None:
    stack: Stack = fresh_stack({"AGENTFLOW_NODE_ACK_WAIT_S": "3"}).start()
    client, _ = stack.user_client()
    with client:
        run_id, marker = start_slow_run(client, fake_llm, 3)
        stack.nats.stop()
        assert [c["ended"] for c in requests_with(fake_llm, marker)] == [None], "ended too soon"
        # The call ends while NATS is down: the worker holds its result until NATS is back.
        wait_for_log(stack.workers, f"holding the result of {run_id}:llm-1:1")
        stack.nats.start()
        record = wait_finished(client, run_id, timeout=90)
        assert record["status"] == "completed", record
        assert marker in record["output_data"]["text"]
        assert record["nodes"]["llm-1"]["attempt"] == 1
