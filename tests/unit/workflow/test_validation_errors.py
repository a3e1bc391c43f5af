"""Every error code, each triggered by a minimal graph and absent from the seed's example."""

from __future__ import annotations

import pytest

from shared.workflow.model import MAX_EDGES, MAX_NODES, WorkflowGraph

from .builders import chain, codes, edge, graph, linear, llm, node, only, seed_graph, validate

ERROR_CODES = [
    "NO_START_NODE",
    "MULTIPLE_START_NODES",
    "NO_END_NODE",
    "DUPLICATE_NODE_ID",
    "DUPLICATE_EDGE_ID",
    "UNKNOWN_NODE_TYPE",
    "INVALID_NODE_CONFIG",
    "EDGE_SOURCE_MISSING",
    "EDGE_TARGET_MISSING",
    "SELF_LOOP",
    "INVALID_HANDLE",
    "CYCLE",
    "INVALID_EXPRESSION",
    "UNKNOWN_REFERENCE",
    "REFERENCE_NOT_UPSTREAM",
    "INVALID_PARENT",
    "CROSS_SCOPE_EDGE",
    "TOO_LARGE",
    "EDGE_INTO_START",
    "EDGE_FROM_END",
    "MISSING_ERROR_EDGE",
]


def test_seed_example_is_valid_and_only_warned_that_input_can_mean_two_things() -> None:
    # `{input}` right after start reads input_data's field `input` when there is one, else
    # the whole input_data: the warning says which explicit reference means which.
    report = validate(seed_graph(), "en")
    assert report.valid
    assert report.errors == []
    [warning] = report.warnings
    assert (warning.code, warning.node_id, warning.field) == (
        "AMBIGUOUS_REFERENCE",
        "llm-1",
        "prompt",
    )
    assert "{input.input} for the field, {start-1} for the whole input" in warning.message


def test_empty_graph_lacks_start_and_end() -> None:
    report = validate(WorkflowGraph())
    assert not report.valid
    assert codes(report.errors) == ["NO_START_NODE", "NO_END_NODE"]


def test_multiple_start_nodes_name_the_extra_one() -> None:
    g = graph(
        [node("s1", "start"), node("s2", "start"), node("end", "end")],
        [edge("s1", "end"), edge("s2", "end")],
    )
    [issue] = validate(g).errors
    assert (issue.code, issue.node_id) == ("MULTIPLE_START_NODES", "s2")


def test_duplicate_ids() -> None:
    g = graph(
        [node("start-1", "start"), llm("a"), llm("a"), node("end-1", "end")],
        [
            edge("start-1", "a", edge_id="e"),
            edge("a", "end-1", edge_id="e"),
        ],
    )
    report = validate(g)
    assert [(i.code, i.node_id, i.edge_id) for i in report.errors] == [
        ("DUPLICATE_NODE_ID", "a", None),
        ("DUPLICATE_EDGE_ID", None, "e"),
    ]


def test_unknown_node_type() -> None:
    [issue] = validate(linear(node("hook", "webhook"))).errors
    assert (issue.code, issue.node_id, issue.field) == ("UNKNOWN_NODE_TYPE", "hook", "type")


def test_invalid_node_config_one_issue_per_problem_with_field() -> None:
    report = validate(linear(llm("llm-1", temprature=1, max_tokens=0)))
    assert sorted((i.code, i.node_id, i.field) for i in report.errors) == [
        ("INVALID_NODE_CONFIG", "llm-1", "max_tokens"),
        ("INVALID_NODE_CONFIG", "llm-1", "temprature"),
    ]


def test_missing_edge_ends() -> None:
    g = linear(llm("a"))
    g.edges.append(g.edges[0].model_copy(update={"id": "x1", "source": "ghost"}))
    g.edges.append(g.edges[0].model_copy(update={"id": "x2", "target": "ghost"}))
    report = validate(g)
    assert [(i.code, i.edge_id) for i in report.errors] == [
        ("EDGE_SOURCE_MISSING", "x1"),
        ("EDGE_TARGET_MISSING", "x2"),
    ]


def test_self_loop() -> None:
    g = linear(llm("a"))
    g.edges.append(g.edges[0].model_copy(update={"id": "loop", "source": "a", "target": "a"}))
    [issue] = validate(g).errors
    assert (issue.code, issue.node_id, issue.edge_id) == ("SELF_LOOP", "a", "loop")


@pytest.mark.parametrize(
    ("source_type", "handle"),
    [("condition", None), ("condition", "yes"), ("llm", "true"), ("llm", "out")],
)
def test_invalid_handle(source_type: str, handle: str | None) -> None:
    source = (
        node("src", "condition", expression="{value}") if source_type == "condition" else llm("src")
    )
    g = graph(
        [node("start", "start"), source, node("end", "end")],
        [edge("start", "src"), edge("src", "end", handle, edge_id="bad")],
    )
    issues = only(validate(g).errors, "INVALID_HANDLE")
    assert [(i.edge_id, i.field) for i in issues] == [("bad", "sourceHandle")]


def test_valid_handles_are_accepted() -> None:
    g = graph(
        [
            node("start", "start"),
            node("c", "condition", expression="{value}", on_error="error_edge"),
            llm("x", on_error="error_edge"),
            node("end", "end"),
        ],
        [
            edge("start", "c"),
            edge("c", "x", "true"),
            edge("c", "end", "false"),
            edge("c", "end", "error"),
            edge("x", "end", "output"),
            edge("x", "end", "error"),
        ],
    )
    assert validate(g).errors == []


def test_cycle_names_nodes_in_order() -> None:
    g = graph(
        [node("start", "start"), llm("a"), llm("b"), llm("c"), node("end", "end")],
        [*chain("start", "a", "b", "c", "end"), edge("c", "a")],
    )
    [issue] = validate(g, "en").errors
    assert (issue.code, issue.node_id) == ("CYCLE", "a")
    assert "a → b → c → a" in issue.message


def test_cycle_inside_a_loop_body_is_an_error() -> None:
    g = linear(
        node("loop", "loop", items_path="{input.items}"),
    )
    g.nodes += graph([llm("x", parent="loop"), llm("y", parent="loop")], []).nodes
    g.edges += graph([], [edge("x", "y"), edge("y", "x")]).edges
    [issue] = validate(g).errors
    assert issue.code == "CYCLE"
    assert issue.node_id == "x"
    assert "loop" in issue.message


def test_iterating_through_a_loop_node_is_not_a_cycle() -> None:
    g = linear(node("loop", "loop", items_path="{input.items}"))
    g.nodes += graph([llm("x", "{item}", parent="loop"), llm("y", "{x}", parent="loop")], []).nodes
    g.edges += graph([], [edge("x", "y")]).edges
    report = validate(g)
    assert report.errors == []


def condition_graph(expression: str) -> WorkflowGraph:
    return graph(
        [node("start", "start"), node("c", "condition", expression=expression), node("end", "end")],
        [edge("start", "c"), edge("c", "end", "true"), edge("c", "end", "false")],
    )


def test_invalid_condition_expression() -> None:
    [issue] = validate(condition_graph("{value} >")).errors
    assert (issue.code, issue.node_id, issue.field) == ("INVALID_EXPRESSION", "c", "expression")


def test_refused_condition_construct_is_an_invalid_expression() -> None:
    report = validate(condition_graph("__import__('os')"))
    assert codes(report.errors) == ["INVALID_EXPRESSION"]


def test_invalid_jmespath_is_an_invalid_expression() -> None:
    g = linear(node("t", "transform", mode="jmespath", expression="items[?"))
    [issue] = validate(g).errors
    assert (issue.code, issue.field) == ("INVALID_EXPRESSION", "expression")


def test_unknown_reference() -> None:
    report = validate(linear(llm("a", "{x.y} {llm-9}")))
    assert [(i.code, i.node_id, i.field) for i in report.errors] == [
        ("UNKNOWN_REFERENCE", "a", "prompt"),
        ("UNKNOWN_REFERENCE", "a", "prompt"),
    ]


def test_reference_not_upstream() -> None:
    report = validate(linear(llm("a", "{b.text}"), llm("b")))
    [issue] = report.errors
    assert (issue.code, issue.node_id, issue.field) == ("REFERENCE_NOT_UPSTREAM", "a", "prompt")


def test_invalid_parent() -> None:
    g = linear(llm("a"), llm("b", parent="a"), llm("c", parent="nowhere"))
    report = validate(g)
    assert [(i.code, i.node_id, i.field) for i in only(report.errors, "INVALID_PARENT")] == [
        ("INVALID_PARENT", "b", "parentId"),
        ("INVALID_PARENT", "c", "parentId"),
    ]


def test_start_end_and_output_cannot_live_in_a_loop_body() -> None:
    g = linear(node("loop", "loop", items_path="items"))
    g.nodes += graph([node("o", "output", parent="loop", value="{item}")], []).nodes
    [issue] = only(validate(g).errors, "INVALID_PARENT")
    assert issue.node_id == "o"


def test_cross_scope_edge() -> None:
    g = linear(node("loop", "loop", items_path="items"), llm("after"))
    g.nodes += graph([llm("inside", parent="loop")], []).nodes
    g.edges += graph([], [edge("inside", "after", edge_id="out"), edge("loop", "inside")]).edges
    report = validate(g)
    assert [i.edge_id for i in only(report.errors, "CROSS_SCOPE_EDGE")] == [
        "out",
        "loop->inside",
    ]


def test_too_large() -> None:
    nodes = [llm(f"n{i}") for i in range(MAX_NODES + 1)]
    report = validate(graph(nodes, []))
    assert codes(report.errors) == ["TOO_LARGE"]
    edges = [edge("a", "b", edge_id=f"e{i}") for i in range(MAX_EDGES + 1)]
    assert codes(validate(graph([], edges)).errors) == ["TOO_LARGE"]


def test_edges_into_start_and_out_of_end() -> None:
    g = linear(llm("a"))
    g.edges += graph([], [edge("a", "start-1"), edge("end-1", "a")]).edges
    report = validate(g)
    assert {"EDGE_INTO_START", "EDGE_FROM_END"} <= set(codes(report.errors))


def test_error_edge_policy_without_an_error_edge() -> None:
    [issue] = validate(linear(llm("a", on_error="error_edge"))).errors
    assert (issue.code, issue.node_id, issue.field) == ("MISSING_ERROR_EDGE", "a", "on_error")


@pytest.mark.parametrize("code", ERROR_CODES)
def test_no_error_code_fires_on_the_seed(code: str) -> None:
    assert code not in codes(validate(seed_graph()).errors)


def test_config_error_fields_are_paths_in_the_users_data() -> None:
    g = linear(node("ag", "agent", prompt="x", tools=[{"type": "calculator", "x": 1}]))
    [issue] = validate(g).errors
    assert (issue.code, issue.field) == ("INVALID_NODE_CONFIG", "tools.0.x")
