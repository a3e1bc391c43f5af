"""AMBIGUOUS_REFERENCE: a bare name whose meaning depends on the run's data is warned about,
with the explicit references that say each meaning; one whose meaning is fixed is not."""

from __future__ import annotations

from typing import Any

import pytest

from shared.workflow.model import WorkflowGraph

from .builders import chain, edge, graph, linear, llm, node, only, validate


def ambiguous(g: WorkflowGraph, language: Any = "en") -> list[tuple[str | None, str | None]]:
    report = validate(g, language)
    return [(i.node_id, i.field) for i in only(report.warnings, "AMBIGUOUS_REFERENCE")]


def messages(g: WorkflowGraph, language: Any = "en") -> list[str]:
    return [i.message for i in only(validate(g, language).warnings, "AMBIGUOUS_REFERENCE")]


def branching(expression: str, after_true: dict[str, Any] | None = None) -> WorkflowGraph:
    """start-1 → c (condition) → yes / no → end-1."""
    return graph(
        [
            node("start-1", "start"),
            node("c", "condition", expression=expression),
            after_true or llm("yes"),
            llm("no"),
            node("end-1", "end"),
        ],
        [
            edge("start-1", "c"),
            edge("c", "yes", "true"),
            edge("c", "no", "false"),
            *chain("yes", "end-1"),
            edge("no", "end-1"),
        ],
    )


def test_the_seeds_condition_is_warned_with_both_explicit_forms_in_both_languages() -> None:
    g = branching("{value} > 10")
    assert ambiguous(g) == [("c", "expression")]
    [en] = messages(g, "en")
    [zh] = messages(g, "zh")
    assert "{value} can mean two things" in en
    assert "{input.value} for the field, {start-1} for the whole output" in en
    assert "{value} 可能有两种含义" in zh
    assert "字段用 {input.value},整个输出用 {start-1}" in zh
    assert validate(g).valid  # a warning never blocks


def test_a_declared_required_field_or_default_makes_the_name_certain() -> None:
    fields = [{"name": "value", "type": "number", "required": True}]
    assert ambiguous(linear(node("in", "input", fields=fields), llm("a", "{value}"))) == []
    fields = [{"name": "input", "type": "string", "default": "x"}]
    assert ambiguous(linear(node("in", "input", fields=fields), llm("a", "{input}"))) == []
    optional = [{"name": "value", "type": "number"}]  # may be missing: then the whole input
    assert ambiguous(linear(node("in", "input", fields=optional), llm("a", "{value}"))) == [
        ("a", "prompt")
    ]


@pytest.mark.parametrize("prompt", ["{text}", "{value}", "{input}", "{usage}", "{anything}"])
def test_after_an_llm_every_bare_name_has_one_meaning(prompt: str) -> None:
    # Its record always has exactly text, model, usage and finish_reason.
    assert ambiguous(linear(llm("l"), llm("a", prompt))) == []


@pytest.mark.parametrize("prompt", ["{text}", "{lang}"])
def test_a_shortcut_right_after_start_reads_input_data_either_way(prompt: str) -> None:
    assert ambiguous(linear(llm("a", prompt))) == []


@pytest.mark.parametrize(
    "prompt",
    [
        "{input.text}",
        "{value.text}",
        "{start-1}",
        "{start-1.value}",
        "{input.value} {input.input}",
        "{{value}} {{input}}",  # escaped: literal text
    ],
)
def test_explicit_forms_are_never_ambiguous(prompt: str) -> None:
    assert ambiguous(linear(llm("a", prompt))) == []


def test_a_transforms_keys_are_known_when_it_builds_an_object_or_text() -> None:
    mapped = node("t", "transform", mode="mapping", mapping={"value": "{input.n}", "x": "1"})
    assert ambiguous(linear(mapped, llm("a", "{value} {x} {y} {input}"))) == []
    text = node("t", "transform", template="总数 {input.n}")
    assert ambiguous(linear(text, llm("a", "{value} {y} {input}"))) == []
    copied = node("t", "transform", template="{input.payload}")  # could be any object
    assert ambiguous(linear(copied, llm("a", "{value} {y} {input}"))) == [("a", "prompt")] * 3
    picked = node("t", "transform", mode="jmespath", source="{input}", expression="a")
    assert ambiguous(linear(picked, llm("a", "{y}"))) == [("t", "source"), ("a", "prompt")]


def test_the_shortcut_message_names_the_upstream_field_and_the_input_field() -> None:
    g = linear(node("t", "transform", template="{input.payload}"), llm("a", "{name}"))
    [en] = messages(g)
    assert "{t.name} for the upstream output's field, {input.name} for the input's" in en


def test_a_condition_passes_on_what_it_read_so_its_branches_read_the_same() -> None:
    g = branching("{input.n} > 1", after_true=llm("yes", "请总结以下文本:{input}"))
    [en] = messages(g)
    assert ("{input.input} for the field, {start-1} for the whole input") in en
    after_llm = graph(
        [
            node("start-1", "start"),
            llm("l"),
            node("c", "condition", expression="len({value}) > 3"),  # the text: no object
            llm("yes", "{value} {text}"),
            node("end-1", "end"),
        ],
        [
            *chain("start-1", "l", "c"),
            edge("c", "yes", "true"),
            edge("c", "end-1", "false"),
            *chain("yes", "end-1"),
        ],
    )
    assert ambiguous(after_llm) == []


def test_a_failure_edge_carries_the_error_record() -> None:
    g = graph(
        [
            node("start-1", "start"),
            llm("l", on_error="error_edge"),
            llm("fallback", "{error} {value}"),
            node("end-1", "end"),
        ],
        [
            *chain("start-1", "l", "end-1"),
            edge("l", "fallback", "error"),
            edge("fallback", "end-1"),
        ],
    )
    assert ambiguous(g) == []


def test_a_default_output_can_make_a_name_ambiguous() -> None:
    g = linear(llm("l", on_error="continue", default_output={"value": 0}), llm("a", "{value}"))
    assert ambiguous(g) == [("a", "prompt")]


def test_in_a_loop_body_variables_are_certain_and_fields_of_the_item_are_not() -> None:
    g = linear(node("loop-1", "loop", items_path="{input.rows}", item_variable="row"), llm("after"))
    g.nodes += graph(
        [
            llm("b1", "{row} {index} {row.name} {loop-1.index}", parent="loop-1"),
            llm("b2", "{name}", parent="loop-1"),
        ],
        [],
    ).nodes
    assert ambiguous(g) == [("b2", "prompt")]
    [en] = messages(g)
    assert "{row.name} for the upstream output's field, {input.name} for the input's" in en


def test_a_loops_output_reads_its_bodys_last_node() -> None:
    g = linear(
        node("loop-1", "loop", items_path="{input.rows}", output={"v": "{value}", "t": "{text}"})
    )
    g.nodes += graph([llm("b1", "{item}", parent="loop-1")], []).nodes
    assert ambiguous(g) == []
    g.nodes[-1].type = "transform"
    g.nodes[-1].data = {"template": "{item}"}
    assert ambiguous(g) == [("loop-1", "output.v"), ("loop-1", "output.t")]


def test_an_output_nodes_default_value_is_not_the_users_reference() -> None:
    # With neither mapping nor value, an output node outputs what flows in, as it is.
    assert ambiguous(linear(node("o", "output"))) == []
