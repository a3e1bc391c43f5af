"""The seed's own examples (API.md) run through the platform as a new user runs them: the
condition `{value} > 10` and the prompt `请总结以下文本:{input}` read the fields the user sent,
and an impossible comparison fails with a message the user can act on."""

from __future__ import annotations

import copy
from typing import Any

import httpx
import pytest

from tests.integration.test_executions import W, create_workflow, edge, node, wait_finished
from tests.support.fake_llm import FakeLLM
from tests.support.stack import Stack
from tests.unit.workflow.builders import SEED_EXAMPLE


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's shared platform: these tests only add their own user's data."""
    return shared_stack


# The seed's condition node (API.md, 条件节点配置) between a start and two branches.
SEED_CONDITION: dict[str, Any] = {
    "name": "条件示例",
    "nodes": [
        node("start-1", "start"),
        node("condition-1", "condition", expression="{value} > 10"),
        node("output-over", "output", mapping={"branch": "大于 10", "value": "{value}"}),
        node("output-not-over", "output", mapping={"branch": "不大于 10", "value": "{value}"}),
        node("end-1", "end"),
    ],
    "edges": [
        edge("start-1", "condition-1"),
        edge("condition-1", "output-over", "true"),
        edge("condition-1", "output-not-over", "false"),
        edge("output-over", "end-1"),
        edge("output-not-over", "end-1"),
    ],
}


def run(client: httpx.Client, workflow_id: str, input_data: dict[str, Any]) -> dict[str, Any]:
    started = client.post(f"{W}/{workflow_id}/execute", json={"input_data": input_data})
    assert started.status_code == 201, started.text
    return wait_finished(client, started.json()["id"])


@pytest.mark.parametrize(
    ("value", "taken", "skipped", "branch"),
    [
        (15, "output-over", "output-not-over", "大于 10"),
        (5, "output-not-over", "output-over", "不大于 10"),
    ],
)
def test_the_seeds_condition_takes_the_branch_its_value_calls_for(
    me: httpx.Client, value: int, taken: str, skipped: str, branch: str
) -> None:
    wid = create_workflow(me, copy.deepcopy(SEED_CONDITION))
    record = run(me, wid, {"value": value})
    assert record["status"] == "completed", record
    nodes = record["nodes"]
    assert nodes["condition-1"]["branch"] == ("true" if value > 10 else "false")
    assert nodes[taken]["status"] == "completed"
    assert nodes[skipped]["status"] == "skipped"
    # The branch reads the same field the condition compared.
    assert record["output_data"] == {"branch": branch, "value": value}


def chat_requests_with_exactly(fake_llm: FakeLLM, text: str) -> list[dict[str, Any]]:
    return [
        request
        for request in fake_llm.requests()
        if request["body"]["messages"] == [{"role": "user", "content": text}]
    ]


def test_the_seeds_prompt_sends_the_model_exactly_the_text_given_as_input(
    me: httpx.Client, fake_llm: FakeLLM
) -> None:
    sent = "请总结以下文本:今天天气很好"
    before = len(chat_requests_with_exactly(fake_llm, sent))
    wid = create_workflow(me, copy.deepcopy(SEED_EXAMPLE))
    record = run(me, wid, {"input": "今天天气很好"})
    assert record["status"] == "completed", record
    # What the model received: the prompt with the field's text, not the input as JSON.
    assert len(chat_requests_with_exactly(fake_llm, sent)) == before + 1
    assert record["nodes"]["llm-1"]["inputs"]["prompt"] == sent
    assert record["output_data"]["text"] == "ECHO: " + sent


def test_the_seed_validates_with_a_warning_that_names_both_explicit_forms(
    me: httpx.Client,
) -> None:
    report = me.post(f"{W}/validate", json=SEED_EXAMPLE, headers={"Accept-Language": "en"})
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["valid"], body["errors"]) == (True, [])
    [warning] = body["warnings"]
    assert (warning["code"], warning["node_id"], warning["field"]) == (
        "AMBIGUOUS_REFERENCE",
        "llm-1",
        "prompt",
    )
    assert "{input.input} for the field, {start-1} for the whole input" in warning["message"]


# Runs speak the seed's language (Chinese); the English wording is in the unit tests
# (tests/unit/workflow/test_expressions.py, tests/unit/executor/test_builtin_runners.py).
SAYS = (
    '条件 {value} > 10 求值失败:无法比较 {"amount": 15}(对象) > 10(数字):'
    "> 只能比较两个数字或两个文本。整个对象不能这样比较或计算;要使用其中的字段,"
    "请用路径引用,例如 {input.字段名}"
)


def test_an_impossible_comparison_fails_with_a_message_the_user_can_act_on(
    me: httpx.Client,
) -> None:
    # No field `value`: `{value}` is the whole input_data, an object, compared with 10.
    wid = create_workflow(me, copy.deepcopy(SEED_CONDITION))
    record = run(me, wid, {"amount": 15})
    assert record["status"] == "failed", record
    assert record["error"]["node_id"] == "condition-1"
    message = record["error"]["message"]
    assert message == "节点 condition-1 执行失败:" + SAYS
    assert record["nodes"]["condition-1"]["error"] == SAYS
    for python in ("TypeError", "dict", "int'", "instances of", "Traceback"):
        assert python not in message
