"""Warning codes: each triggered by a minimal graph, none on the seed; warnings never block."""

from __future__ import annotations

import pytest

from .builders import chain, codes, edge, graph, linear, llm, node, only, seed_graph, validate

WARNING_CODES = [
    "UNREACHABLE_NODE",
    "DEAD_END",
    "UNUSED_INPUT",
    "MISSING_BRANCH",
    "ERROR_EDGE_IGNORED",
    "EMPTY_LOOP_BODY",
    "DUPLICATE_EDGE",
]


@pytest.mark.parametrize("code", WARNING_CODES)
def test_no_warning_code_fires_on_the_seed(code: str) -> None:
    assert code not in codes(validate(seed_graph()).warnings)


def test_unreachable_node_and_its_dead_end() -> None:
    g = linear(llm("a"))
    g.nodes += graph([llm("island")], []).nodes
    report = validate(g)
    assert report.valid
    assert [(i.code, i.node_id) for i in report.warnings] == [
        ("UNREACHABLE_NODE", "island"),
        ("DEAD_END", "island"),
    ]


def test_loop_body_is_reached_with_its_loop() -> None:
    g = linear(node("loop", "loop", items_path="items"))
    g.nodes += graph([llm("body", "{item}", parent="loop")], []).nodes
    assert validate(g).warnings == []


def test_dead_end_ignores_failure_edges_and_body_nodes() -> None:
    g = graph(
        [
            node("start", "start"),
            llm("a", on_error="error_edge"),
            llm("b"),
            node("end", "end"),
        ],
        [edge("start", "a"), edge("a", "end", "error"), edge("start", "b"), edge("b", "end")],
    )
    report = validate(g)
    assert report.valid
    assert [(i.code, i.node_id) for i in report.warnings] == [("DEAD_END", "a")]


def test_unused_input_names_the_field() -> None:
    g = linear(
        node("in", "input", fields=[{"name": "text"}, {"name": "lang"}]),
        llm("a", "{input.text}"),
    )
    report = validate(g)
    assert report.valid
    [issue] = report.warnings
    assert (issue.code, issue.node_id, issue.field) == ("UNUSED_INPUT", "in", "fields.1")
    assert "lang" in issue.message


@pytest.mark.parametrize(
    "prompt",
    [
        "{input}",
        "{in}",
        "{start-1.lang} {in.text}",
        "{text} {lang}",  # shortcuts
        "{value}",  # right after the input node: its whole output
        "{value.text} {input.lang}",
    ],
)
def test_inputs_read_any_way_are_used(prompt: str) -> None:
    g = linear(node("in", "input", fields=[{"name": "text"}, {"name": "lang"}]), llm("a", prompt))
    assert only(validate(g).warnings, "UNUSED_INPUT") == []


def test_inputs_read_by_an_expression_or_jmespath_are_used() -> None:
    g = graph(
        [
            node("start-1", "start"),
            node("in", "input", fields=[{"name": "n"}, {"name": "items"}]),
            node("c", "condition", expression="{input.n} > 1"),
            node("t", "transform", mode="jmespath", source="{in}", expression="items[0]"),
            node("end-1", "end", output="{t}"),
        ],
        [
            *chain("start-1", "in", "c"),
            edge("c", "t", "true"),
            edge("c", "end-1", "false"),
            *chain("t", "end-1"),
        ],
    )
    report = validate(g)
    assert report.errors == []
    assert report.warnings == []


def test_missing_branch_per_branch() -> None:
    g = graph(
        [
            node("start", "start"),
            node("c", "condition", expression="{input.flag}"),
            node("end", "end"),
        ],
        [edge("start", "c"), edge("c", "end", "true")],
    )
    report = validate(g, "en")
    assert report.valid
    [issue] = report.warnings
    assert (issue.code, issue.node_id) == ("MISSING_BRANCH", "c")
    assert "false" in issue.message


def test_error_edge_ignored_without_the_policy() -> None:
    g = linear(llm("a"))
    g.edges += graph([], [edge("a", "end-1", "error")]).edges
    report = validate(g)
    assert report.valid
    assert [(i.code, i.edge_id) for i in report.warnings] == [
        ("ERROR_EDGE_IGNORED", "a->end-1:error")
    ]


def test_empty_loop_body() -> None:
    report = validate(linear(node("loop", "loop", items_path="items")))
    assert report.valid
    assert codes(report.warnings) == ["EMPTY_LOOP_BODY"]


def test_duplicate_edge() -> None:
    g = linear(llm("a"))
    g.edges.append(g.edges[0].model_copy(update={"id": "again"}))
    report = validate(g)
    assert report.valid
    assert [(i.code, i.edge_id) for i in report.warnings] == [("DUPLICATE_EDGE", "again")]
