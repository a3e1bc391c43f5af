"""Reference rules: roots, upstream-only, loop scoping; and resolving them at run time."""

from __future__ import annotations

from typing import Any

import pytest

from shared.workflow.references import LoopFrame, RefKind, RuntimeContext, classify_reference
from shared.workflow.templates import Reference, render, render_value

from .builders import chain, edge, graph, linear, llm, node, only, validate


def ref(dotted: str) -> Reference:
    return Reference.parse(dotted)


@pytest.mark.parametrize(
    ("dotted", "kind"),
    [
        ("input", RefKind.INPUT),
        ("input.text", RefKind.INPUT),
        ("value", RefKind.VALUE),
        ("value.text", RefKind.VALUE),
        ("item.name", RefKind.LOOP_ITEM),
        ("index", RefKind.LOOP_INDEX),
        ("llm-1", RefKind.NODE),
        ("llm-1.usage.total_tokens", RefKind.NODE),
        ("text", RefKind.SHORTCUT),
        ("llm-9", RefKind.UNKNOWN),
        ("data.items", RefKind.UNKNOWN),
    ],
)
def test_classification_inside_a_loop(dotted: str, kind: RefKind) -> None:
    loop_variables = {"item": "loop-1", "index": "loop-1"}
    assert classify_reference(ref(dotted), {"llm-1", "loop-1"}, loop_variables) is kind


def test_loop_variables_are_plain_names_outside_loops() -> None:
    assert classify_reference(ref("item"), set()) is RefKind.SHORTCUT
    assert classify_reference(ref("item.name"), set()) is RefKind.UNKNOWN


# -- validation ------------------------------------------------------------------------------


def errors_of(g: Any) -> list[tuple[str, str | None, str | None]]:
    return [(i.code, i.node_id, i.field) for i in validate(g).errors]


def test_upstream_references_are_fine_in_every_template_field() -> None:
    g = linear(
        node("in", "input", fields=[{"name": "text"}]),
        llm("llm-1", "{input.text}", system_prompt="{in.text}"),
        node("t", "transform", mode="mapping", mapping={"a": {"b": ["{llm-1.text}"]}}),
        node(
            "ag",
            "agent",
            prompt="{t.a}",
            tools=[{"type": "data_source_query", "data_source_id": "{llm-1.json.id}"}],
        ),
        node("o", "output", mapping={"x": "{ag}", "n": "{llm-1.usage.total_tokens}"}),
    )
    g.nodes[-1].data["output"] = "{o}"
    assert errors_of(g) == []


def test_not_upstream_and_unknown_in_nested_fields_name_the_field() -> None:
    g = linear(
        llm("llm-1", "{later}"),
        node("o", "output", mapping={"x": {"deep": ["{nope-1}", "{later}"]}}),
        llm("later"),
    )
    assert errors_of(g) == [
        ("REFERENCE_NOT_UPSTREAM", "llm-1", "prompt"),
        ("UNKNOWN_REFERENCE", "o", "mapping.x.deep.0"),
        ("REFERENCE_NOT_UPSTREAM", "o", "mapping.x.deep.1"),
    ]


def test_a_node_cannot_reference_itself() -> None:
    report = validate(linear(llm("a", "{a.text}")), "en")
    [issue] = report.errors
    assert issue.code == "REFERENCE_NOT_UPSTREAM"
    assert "itself" in issue.message


def test_other_branch_of_a_condition_is_not_upstream_but_a_join_sees_both() -> None:
    g = graph(
        [
            node("start", "start"),
            node("c", "condition", expression="{value} > 1"),
            llm("yes"),
            llm("no", "{yes}"),
            llm("join", "{yes} {no}"),
            node("end", "end"),
        ],
        [
            edge("start", "c"),
            edge("c", "yes", "true"),
            edge("c", "no", "false"),
            *chain("yes", "join", "end"),
            edge("no", "join"),
        ],
    )
    assert errors_of(g) == [("REFERENCE_NOT_UPSTREAM", "no", "prompt")]


def test_condition_expression_references_are_checked() -> None:
    g = graph(
        [
            node("start", "start"),
            node("c", "condition", expression="{later} > 1 and {ghost.x} and {value}"),
            llm("later"),
            node("end", "end"),
        ],
        [
            edge("start", "c"),
            edge("c", "later", "true"),
            edge("c", "end", "false"),
            edge("later", "end"),
        ],
    )
    assert errors_of(g) == [
        ("REFERENCE_NOT_UPSTREAM", "c", "expression"),
        ("UNKNOWN_REFERENCE", "c", "expression"),
    ]


def loop_graph(
    body: list[dict[str, Any]],
    body_edges: list[dict[str, Any]] | None = None,
    after_prompt: str = "{loop-1}",
    **loop_data: Any,
) -> Any:
    g = linear(
        llm("prep"),
        node("loop-1", "loop", **({"items_path": "{prep.json.items}"} | loop_data)),
        llm("after", after_prompt),
    )
    g.nodes += graph(body, []).nodes
    g.edges += graph([], body_edges or []).edges
    return g


def test_body_nodes_see_item_index_loop_and_upstream_of_the_loop() -> None:
    g = loop_graph(
        [
            llm(
                "b1",
                "{item.name} #{index} of {loop-1.count} {prep.text} {input.x}",
                parent="loop-1",
            ),
            llm("b2", "{b1.text} {value}", parent="loop-1"),
        ],
        [edge("b1", "b2")],
    )
    assert errors_of(g) == []


def test_custom_item_variable() -> None:
    g = loop_graph([llm("b1", "{row.name}", parent="loop-1")], item_variable="row")
    assert errors_of(g) == []
    g = loop_graph([llm("b1", "{item.name}", parent="loop-1")], item_variable="row")
    assert errors_of(g) == [("UNKNOWN_REFERENCE", "b1", "prompt")]


def test_body_nodes_cannot_be_referenced_from_outside_the_loop() -> None:
    g = loop_graph([llm("b1", "{item}", parent="loop-1")], after_prompt="{b1.text}")
    report = validate(g, "en")
    [issue] = report.errors
    assert (issue.code, issue.node_id) == ("REFERENCE_NOT_UPSTREAM", "after")
    assert "{loop-1}" in issue.message


def test_body_node_cannot_reference_a_later_body_node() -> None:
    g = loop_graph(
        [llm("b1", "{b2}", parent="loop-1"), llm("b2", parent="loop-1")], [edge("b1", "b2")]
    )
    assert errors_of(g) == [("REFERENCE_NOT_UPSTREAM", "b1", "prompt")]


def test_loop_output_sees_the_whole_body_and_items_path_does_not() -> None:
    g = loop_graph(
        [llm("b1", "{item}", parent="loop-1"), llm("b2", "{b1}", parent="loop-1")],
        [edge("b1", "b2")],
        output={"name": "{item.name}", "first": "{b1.text}", "last": "{b2}", "i": "{index}"},
    )
    assert errors_of(g) == []
    g = loop_graph([llm("b1", "{item}", parent="loop-1")], items_path="{b1.items}")
    assert errors_of(g) == [("REFERENCE_NOT_UPSTREAM", "loop-1", "items_path")]
    g = loop_graph([llm("b1", "{item}", parent="loop-1")], items_path="item.list")
    assert errors_of(g) == [("UNKNOWN_REFERENCE", "loop-1", "items_path")]


def test_nested_loops_see_outer_variables() -> None:
    g = loop_graph(
        [
            node(
                "inner",
                "loop",
                parent="loop-1",
                items_path="{item.children}",
                item_variable="child",
            ),
            llm("deep", "{child.name} in {item.name} at {index}/{loop-1.index}", parent="inner"),
            llm("sibling", "{deep}", parent="loop-1"),
        ]
    )
    assert errors_of(g) == [("REFERENCE_NOT_UPSTREAM", "sibling", "prompt")]


def test_english_and_chinese_messages() -> None:
    g = linear(llm("a", "{x.y}"))
    [zh] = validate(g).errors
    [en] = validate(g, "en").errors
    assert zh.code == en.code == "UNKNOWN_REFERENCE"
    assert "引用了 {x.y}" in zh.message
    assert "{x.y} refers to x" in en.message
    assert only(validate(graph([], [])).errors, "NO_START_NODE")[0].message == "缺少开始节点(start)"
    assert only(validate(graph([], []), "en").errors, "NO_START_NODE")[0].message == "No start node"


def test_config_errors_are_translated() -> None:
    [zh] = validate(linear(llm("a", temprature=1))).errors
    [en] = validate(linear(llm("a", temprature=1)), "en").errors
    assert "不支持的字段" in zh.message
    assert "unknown field" in en.message
    [zh] = validate(linear(node("loop", "loop", items_path="x", item_variable="value"))).errors
    assert "保留名称" in zh.message


# -- run time --------------------------------------------------------------------------------

NODE_TYPES = {
    "start-1": "start",
    "llm-1": "llm",
    "t": "transform",
    "loop-1": "loop",
    "c": "condition",
}
RECORDS = {
    "llm-1": {"text": "总结", "usage": {"total_tokens": 42}},
    "t": {"items": [{"name": "a"}, {"name": "b"}], "lang": "fr"},
    "c": {"result": True, "branch": "true", "value": 15},
}
INPUT = {"text": "原文", "lang": "en", "count": 3}


def context(upstream: tuple[str, ...] = (), loops: tuple[LoopFrame, ...] = ()) -> RuntimeContext:
    return RuntimeContext(
        input_data=INPUT, node_types=NODE_TYPES, records=RECORDS, upstream=upstream, loops=loops
    )


def test_runtime_resolution_of_each_root() -> None:
    ctx = context(upstream=("llm-1",))
    assert render("{input.text}|{llm-1}|{llm-1.usage.total_tokens}|{value}", ctx.resolve) == (
        "原文|总结|42|总结"
    )
    assert render_value("{t.items.1.name}", ctx.resolve) == "b"
    assert render_value("{value.usage.total_tokens}", ctx.resolve) == 42
    assert render_value("{c}", ctx.resolve) == 15  # a condition passes its value through
    assert render_value("{loop-1}", ctx.resolve) is None  # has not run
    assert render_value("{input}", ctx.resolve) == INPUT


def test_shortcut_prefers_upstream_output_then_input() -> None:
    ctx = context(upstream=("t",))
    assert render_value("{lang}", ctx.resolve) == "fr"
    assert render_value("{count}", ctx.resolve) == 3
    assert render_value("{absent}", ctx.resolve) is None


def test_value_at_a_join_and_at_the_start() -> None:
    assert context(upstream=("llm-1", "c")).value() == {"llm-1": "总结", "c": 15}
    assert context().value() == INPUT


def test_loop_variables_at_run_time() -> None:
    outer = LoopFrame("loop-1", "item", {"name": "a", "kids": ["x"]}, 0, 2)
    inner = LoopFrame("inner", "kid", "x", 5, 6)
    ctx = context(loops=(outer, inner))
    assert render("{kid} {item.name} {index} {loop-1.index} {loop-1.count}", ctx.resolve) == (
        "x a 5 0 2"
    )
    assert context(loops=(outer,)).value() == outer.item  # a body's first node


# -- bare names read what flows in (n8n's $json.field) ---------------------------------------

SEED_TYPES = {"start-1": "start", "llm-1": "llm", "c": "condition", "t": "transform"}


def after(
    upstream: str, record: Any, input_data: dict[str, Any], loops: tuple[LoopFrame, ...] = ()
) -> RuntimeContext:
    """The context of a node right after `upstream`, whose output record is `record`."""
    return RuntimeContext(
        input_data=input_data,
        node_types=SEED_TYPES,
        records={upstream: record},
        upstream=(upstream,),
        loops=loops,
    )


@pytest.mark.parametrize(
    ("input_data", "value"),
    [({"value": 15}, 15), ({"value": None}, None), ({"amount": 15}, {"amount": 15})],
)
def test_value_after_start_is_the_field_value_else_the_whole_input(
    input_data: dict[str, Any], value: Any
) -> None:
    ctx = after("start-1", input_data, input_data)
    assert render_value("{value}", ctx.resolve) == value


def test_input_after_start_is_the_field_input_else_the_whole_input() -> None:
    text = {"input": "今天天气很好"}
    assert render("请总结以下文本:{input}", after("start-1", text, text).resolve) == (
        "请总结以下文本:今天天气很好"
    )
    other = {"text": "今天天气很好"}
    assert render("请总结以下文本:{input}", after("start-1", other, other).resolve) == (
        '请总结以下文本:{"text": "今天天气很好"}'
    )


def test_after_an_llm_bare_names_read_its_record_and_fall_back_to_their_meaning() -> None:
    record = {"text": "总结", "model": "m", "usage": {"total_tokens": 3}, "finish_reason": "stop"}
    ctx = after("llm-1", record, {"input": "原文", "lang": "en"})
    assert render_value("{text}", ctx.resolve) == "总结"  # the record's field
    assert render_value("{usage}", ctx.resolve) == {"total_tokens": 3}
    assert render_value("{value}", ctx.resolve) == "总结"  # no field value: the primary output
    assert render_value("{input}", ctx.resolve) == {"input": "原文", "lang": "en"}  # built-in
    assert render_value("{lang}", ctx.resolve) == "en"  # no such field: input_data's


def test_explicit_forms_do_not_change() -> None:
    data = {"value": {"x": 1}, "x": 2, "input": "i"}
    ctx = after("start-1", data, data)
    assert render_value("{value}", ctx.resolve) == {"x": 1}
    assert render_value("{value.x}", ctx.resolve) == 2  # a path into the upstream record
    assert render_value("{input.x}", ctx.resolve) == 2
    assert render_value("{input.value.x}", ctx.resolve) == 1
    assert render_value("{start-1.value}", ctx.resolve) == {"x": 1}
    assert render_value("{start-1}", ctx.resolve) == data
    llm_ctx = after("llm-1", {"text": "t", "usage": {}}, data)
    assert render_value("{llm-1.text}", llm_ctx.resolve) == "t"
    assert render_value("{value.text}", llm_ctx.resolve) == "t"


def test_a_condition_hands_on_what_it_received() -> None:
    # start → condition → here: the branch reads the fields the condition read.
    record = {"result": True, "branch": "true", "value": {"value": 15, "note": "n"}}
    ctx = after("c", record, {"value": 15, "note": "n"})
    assert render_value("{value}", ctx.resolve) == 15
    assert render_value("{note}", ctx.resolve) == "n"
    assert render_value("{result}", ctx.resolve) is None  # not the condition's own field
    assert render_value("{c.result}", ctx.resolve) is True  # that one, explicitly
    assert render_value("{c}", ctx.resolve) == {"value": 15, "note": "n"}
    failed = after("c", {"error": {"message": "m"}}, {})
    assert render_value("{error.message}", failed.resolve) is None  # a path: unknown root
    assert render_value("{error}", failed.resolve) == {"message": "m"}


def test_loop_variables_come_before_fields_of_the_item() -> None:
    item = {"item": "field item", "index": 99, "value": 3, "name": "a"}
    frame = LoopFrame("loop-1", "item", item, 0, 2)
    ctx = RuntimeContext(
        input_data={"name": "input name"}, node_types=NODE_TYPES, records={}, loops=(frame,)
    )
    assert render_value("{item}", ctx.resolve) == item
    assert render_value("{index}", ctx.resolve) == 0
    assert render_value("{value}", ctx.resolve) == 3  # a body's first node reads the item
    assert render_value("{name}", ctx.resolve) == "a"


def test_at_a_join_bare_names_read_the_object_keyed_by_node_ids() -> None:
    ctx = context(upstream=("llm-1", "t"))
    assert render_value("{value}", ctx.resolve) == {"llm-1": "总结", "t": RECORDS["t"]}
    assert render_value("{lang}", ctx.resolve) == "en"  # not a field of the join: the input's
