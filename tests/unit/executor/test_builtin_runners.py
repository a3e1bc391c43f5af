"""The built-in node runners compute what docs/workflow-model.md promises."""

from __future__ import annotations

from typing import Any

import pytest

from services.executor.control_nodes import final_output_data
from services.executor.node_kinds import run_control
from services.executor.node_run import NodeRunError
from shared.workflow.references import LoopFrame, RuntimeContext

TYPES = {"start-1": "start", "llm-1": "llm", "input-1": "input", "t-1": "transform"}


def context(
    records: dict[str, Any] | None = None,
    upstream: tuple[str, ...] = (),
    input_data: dict[str, Any] | None = None,
    loops: tuple[LoopFrame, ...] = (),
) -> RuntimeContext:
    return RuntimeContext(
        input_data=input_data if input_data is not None else {"text": "你好", "n": 12},
        node_types=TYPES,
        records=records or {},
        upstream=upstream,
        loops=loops,
    )


LLM_RECORD = {"text": "42", "model": "deepseek-chat", "usage": {"total_tokens": 7}}


def test_start_passes_the_input_on() -> None:
    assert run_control("start", {}, context()).output == {"text": "你好", "n": 12}


def test_input_fills_defaults_and_refuses_bad_input() -> None:
    data = {
        "fields": [
            {"name": "text", "type": "string", "required": True},
            {"name": "lang", "type": "string", "default": "en"},
        ]
    }
    assert run_control("input", data, context()).output == {"text": "你好", "n": 12, "lang": "en"}
    with pytest.raises(NodeRunError) as missing:
        run_control("input", data, context(input_data={"n": 1}))
    assert "text" in missing.value.render("en")
    assert missing.value.render("zh") != missing.value.render("en")
    assert not missing.value.retryable


@pytest.mark.parametrize(
    ("expression", "branch"),
    [
        ("{value} > 10", "true"),
        ("{value} > 100", "false"),
        ("{llm-1.usage.total_tokens} == 7 and contains({input.text}, '你')", "true"),
        ("not ({input.n} in [1, 2, 3])", "true"),
    ],
)
def test_condition_picks_a_branch(expression: str, branch: str) -> None:
    ctx = context(records={"llm-1": LLM_RECORD}, upstream=("llm-1",))
    result = run_control("condition", {"expression": expression}, ctx)
    assert result.branch == branch
    assert result.output == {"result": branch == "true", "branch": branch, "value": "42"}


def test_transform_modes() -> None:
    ctx = context(records={"llm-1": LLM_RECORD}, upstream=("llm-1",))
    template = run_control("transform", {"template": "答案是 {value}"}, ctx)
    assert template.output == "答案是 42"
    typed = run_control("transform", {"template": "{llm-1.usage}"}, ctx)
    assert typed.output == {"total_tokens": 7}
    mapping = run_control(
        "transform", {"mode": "mapping", "mapping": {"t": "{input.text}", "n": "{input.n}"}}, ctx
    )
    assert mapping.output == {"t": "你好", "n": 12}
    items = {"items": [{"name": "a", "price": 5}, {"name": "b", "price": 20}]}
    picked = run_control(
        "transform",
        {"mode": "jmespath", "source": "{input}", "expression": "items[?price > `10`].name"},
        context(input_data=items),
    )
    assert picked.output == ["b"]


def test_transform_failures_are_not_retryable() -> None:
    with pytest.raises(NodeRunError) as bad:
        run_control("transform", {"mode": "jmespath", "expression": "abs(@)"}, context())
    assert not bad.value.retryable
    with pytest.raises(NodeRunError):
        run_control("transform", {"mode": "template"}, context())  # template missing


def test_output_shapes_and_end() -> None:
    ctx = context(records={"llm-1": LLM_RECORD}, upstream=("llm-1",))
    shaped = run_control("output", {"mapping": {"answer": "{llm-1.text}", "n": "{input.n}"}}, ctx)
    assert shaped.output == {"answer": "42", "n": 12}
    assert run_control("output", {}, ctx).output == "42"
    assert run_control("end", {"output": {"final": "{value}"}}, ctx).output == {
        "output": {"final": "42"}
    }
    assert run_control("end", {}, ctx).output == {"output": None}


def test_loop_items_are_visible_in_a_body() -> None:
    frame = LoopFrame(loop_id="loop-1", item_variable="item", item={"name": "x"}, index=2, count=3)
    result = run_control("transform", {"template": "{index}:{item.name}"}, context(loops=(frame,)))
    assert result.output == "2:x"


def test_other_types_are_not_built_in() -> None:
    with pytest.raises(NodeRunError):
        run_control("llm", {"prompt": "x"}, context())


def test_final_output_data_preference() -> None:
    assert final_output_data({"output": {"a": 1}}, [{"b": 2}], LLM_RECORD) == {"a": 1}
    assert final_output_data({"output": None}, [{"b": 2}, {"c": 3}], LLM_RECORD) == {
        "b": 2,
        "c": 3,
    }
    assert final_output_data({"output": None}, ["text"], None) == {"result": "text"}
    assert final_output_data({"output": None}, [], LLM_RECORD) == LLM_RECORD
    assert final_output_data(None, [], "plain") == {"result": "plain"}


# -- the seed's condition, as a user runs it ------------------------------------------------


@pytest.mark.parametrize(("value", "branch"), [(15, "true"), (5, "false"), ("15", "true")])
def test_the_seeds_condition_right_after_start_reads_the_field_value(
    value: Any, branch: str
) -> None:
    input_data = {"value": value}
    ctx = context(records={"start-1": input_data}, upstream=("start-1",), input_data=input_data)
    result = run_control("condition", {"expression": "{value} > 10"}, ctx)
    assert result.branch == branch
    assert result.output["value"] == input_data  # passed on as it came


def test_an_incompatible_comparison_fails_naming_the_expression_values_and_kinds() -> None:
    input_data = {"amount": 15}
    ctx = context(records={"start-1": input_data}, upstream=("start-1",), input_data=input_data)
    with pytest.raises(NodeRunError) as failed:
        run_control("condition", {"expression": "{value} > 10"}, ctx)
    en, zh = failed.value.render("en"), failed.value.render("zh")
    assert en.startswith(
        'the condition {value} > 10 failed: cannot compare {"amount": 15} (object) > 10 (number)'
    )
    assert zh.startswith('条件 {value} > 10 求值失败:无法比较 {"amount": 15}(对象) > 10(数字)')
    for message in (en, zh):
        assert "Error" not in message
        assert "dict" not in message
    assert not failed.value.retryable


def test_a_long_expression_is_cut_short_in_the_message() -> None:
    expression = "{input.n} > 1 and " * 30 + "{input.text} > 1"
    with pytest.raises(NodeRunError) as failed:
        run_control("condition", {"expression": expression}, context())
    assert "{input.n} > 1 and {input.n}" in failed.value.render("en")
    assert len(failed.value.render("en")) < 500


def test_jmespath_without_a_source_reads_the_whole_upstream_output() -> None:
    # A field named "value" does not change what the expression searches.
    data = {"value": 1, "items": [{"name": "a"}, {"name": "b"}]}
    ctx = context(records={"start-1": data}, upstream=("start-1",), input_data=data)
    picked = run_control("transform", {"mode": "jmespath", "expression": "items[1].name"}, ctx)
    assert picked.output == "b"
    explicit = run_control(
        "transform", {"mode": "jmespath", "source": "{value}", "expression": "@"}, ctx
    )
    assert explicit.output == 1  # written by the user: the field, as everywhere else
