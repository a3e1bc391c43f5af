"""The seed's examples run by the real decisions and runners in one process: a bare name
reads the field of what flows into the node (docs/workflow-model.md, Templates)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.executor.local_engine import run_builtin_command, run_locally
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.node_run import NodeResult
from shared.workflow.templates import render
from tests.unit.executor.test_loops import edge, node
from tests.unit.workflow.builders import SEED_EXAMPLE

SEED_CONDITION: dict[str, Any] = {
    "nodes": [
        node("start-1", "start"),
        node("condition-1", "condition", {"expression": "{value} > 10"}),
        node("big", "transform", {"template": "大:{value}"}),
        node("small", "transform", {"template": "小:{value}"}),
        node("end-1", "end"),
    ],
    "edges": [
        edge("start-1", "condition-1"),
        edge("condition-1", "big", "true"),
        edge("condition-1", "small", "false"),
        edge("big", "end-1"),
        edge("small", "end-1"),
    ],
}


@pytest.mark.parametrize(("value", "result"), [(15, "大:15"), (5, "小:5")])
@pytest.mark.parametrize("inline", [True, False], ids=["inline", "by-workers"])
def test_the_seeds_condition_takes_the_branch_its_value_calls_for(
    value: int, result: str, inline: bool
) -> None:
    execution = run_locally(SEED_CONDITION, {"value": value}, inline=inline)
    assert execution.status == "completed", execution.error
    assert execution.output_data == {"result": result}  # and the branch reads the field too


def test_an_object_compared_with_a_number_fails_the_run_in_words() -> None:
    execution = run_locally(SEED_CONDITION, {"amount": 15}, inline=True)
    assert execution.status == "failed"
    assert execution.error is not None
    assert execution.error["node_id"] == "condition-1"
    message = execution.error["message"]
    assert '条件 {value} > 10 求值失败:无法比较 {"amount": 15}(对象) > 10(数字)' in message
    assert "TypeError" not in message
    assert "dict" not in message


def llm_answering(prompts: list[str]) -> Any:
    """A worker that answers llm nodes with the prompt it was given, and remembers it."""

    def run(command: NodeRunCommand) -> NodeRunResult:
        if command.node_type != "llm":
            return run_builtin_command(command)
        prompt = render(command.data["prompt"], command.context().resolve)
        prompts.append(prompt)
        record = {"text": prompt, "model": "m", "usage": {}, "finish_reason": "stop"}
        return NodeRunResult.succeeded(
            command.execution_id, command.run_key, command.attempt, NodeResult(record), 0
        )

    return run


@pytest.mark.parametrize(
    ("input_data", "sent"),
    [
        ({"input": "今天天气很好"}, "请总结以下文本:今天天气很好"),
        ({"text": "今天天气很好"}, '请总结以下文本:{"text": "今天天气很好"}'),
    ],
)
def test_the_seeds_prompt_sends_the_field_input_else_the_whole_input(
    input_data: dict[str, Any], sent: str
) -> None:
    prompts: list[str] = []
    execution = run_locally(copy.deepcopy(SEED_EXAMPLE), input_data, llm_answering(prompts))
    assert execution.status == "completed", execution.error
    assert prompts == [sent]
