"""GraphIndex: scopes, order, ancestry and cycles."""

from __future__ import annotations

from shared.workflow.graph import GraphIndex

from .builders import chain, edge, graph, llm, node


def diamond() -> GraphIndex:
    #   start → a → b → d → end,  a → c → d
    return GraphIndex(
        graph(
            [node("start", "start"), llm("a"), llm("b"), llm("c"), llm("d"), node("end", "end")],
            [*chain("start", "a", "b", "d", "end"), edge("a", "c"), edge("c", "d")],
        )
    )


def with_loop() -> GraphIndex:
    # start → prep → loop → after → end; body: b1 → b2, and b3 alone; inner loop in body
    return GraphIndex(
        graph(
            [
                node("start", "start"),
                llm("prep"),
                node("loop", "loop", items_path="items"),
                llm("b1", parent="loop"),
                llm("b2", parent="loop"),
                llm("b3", parent="loop"),
                node("inner", "loop", parent="loop", items_path="{item.list}"),
                llm("deep", parent="inner"),
                llm("after"),
                node("end", "end"),
            ],
            [*chain("start", "prep", "loop", "after", "end"), edge("b1", "b2")],
        )
    )


def test_ancestors_follow_edges() -> None:
    index = diamond()
    assert index.ancestors("d") == {"start", "a", "b", "c"}
    assert index.ancestors("b") == {"start", "a"}
    assert index.ancestors("start") == set()
    assert index.is_upstream("c", "d")
    assert not index.is_upstream("b", "c")
    assert not index.is_upstream("d", "d")


def test_topological_order_respects_edges_and_document_order() -> None:
    assert diamond().topological_order() == ["start", "a", "b", "c", "d", "end"]


def test_scopes_and_body_ancestry() -> None:
    index = with_loop()
    assert index.top_level == ["start", "prep", "loop", "after", "end"]
    assert index.children["loop"] == ["b1", "b2", "b3", "inner"]
    assert index.scope_of("deep") == "inner"
    assert index.enclosing_loops("deep") == ["loop", "inner"]
    assert sorted(index.body_nodes("loop")) == ["b1", "b2", "b3", "deep", "inner"]
    # A body node sees its body's upstream, the loop itself, and the loop's upstream.
    assert index.ancestors("b2") == {"b1", "loop", "prep", "start"}
    assert index.ancestors("deep") == {"inner", "loop", "prep", "start"}
    assert index.is_upstream("prep", "deep")
    assert index.is_upstream("loop", "b1")
    # Nothing outside a body sees into it.
    assert not index.is_upstream("b1", "after")
    assert index.ancestors("after") == {"loop", "prep", "start"}
    assert index.entry_nodes("loop") == ["b1", "b3", "inner"]
    assert index.exit_nodes("loop") == ["b2", "b3", "inner"]


def test_reachability_includes_bodies_of_reached_loops() -> None:
    index = with_loop()
    assert index.reachable_from(["start"]) == set(index.nodes_by_id)


def test_cycle_is_found_in_order() -> None:
    index = GraphIndex(
        graph(
            [node("start", "start"), llm("a"), llm("b"), llm("c"), node("end", "end")],
            [*chain("start", "a", "b", "c", "end"), edge("c", "a")],
        )
    )
    assert index.topological_order() is None
    assert index.find_cycle() == ["a", "b", "c"]
    assert not index.is_upstream("end", "a")
    assert index.is_upstream("c", "a")  # in a cycle, ancestry is by search


def test_one_cycle_per_strongly_connected_group() -> None:
    index = GraphIndex(
        graph(
            [llm("a"), llm("b"), llm("c"), llm("d")],
            [edge("a", "b"), edge("b", "a"), edge("c", "d"), edge("d", "c"), edge("b", "c")],
        )
    )
    assert sorted(index.find_cycles()) == [["a", "b"], ["c", "d"]]


def test_cycle_inside_a_loop_body_is_in_that_scope_only() -> None:
    index = GraphIndex(
        graph(
            [
                node("start", "start"),
                node("loop", "loop", items_path="items"),
                llm("x", parent="loop"),
                llm("y", parent="loop"),
                node("end", "end"),
            ],
            [*chain("start", "loop", "end"), edge("x", "y"), edge("y", "x")],
        )
    )
    assert index.find_cycle(None) is None
    assert index.find_cycle("loop") == ["x", "y"]


def test_malformed_parts_are_set_aside_not_indexed() -> None:
    index = GraphIndex(
        graph(
            [
                llm("a"),
                llm("a", prompt="again"),
                node("loop", "loop", items_path="items"),
                llm("body", parent="loop"),
                llm("orphan", parent="nowhere"),
                llm("notloop", parent="a"),
            ],
            [
                edge("a", "ghost"),
                edge("a", "a"),
                edge("a", "body"),
                edge("a", "loop", edge_id="dup"),
                edge("loop", "a", edge_id="dup"),
            ],
        )
    )
    assert [n.id for n in index.duplicate_nodes] == ["a"]
    assert [e.id for e in index.duplicate_edges] == ["dup"]
    assert [e.target for e in index.dangling_edges] == ["ghost"]
    assert [e.id for e in index.self_loops] == ["a->a"]
    assert [e.target for e in index.cross_scope_edges] == ["body"]
    assert {(p.node_id, p.problem) for p in index.invalid_parents} == {
        ("orphan", "missing"),
        ("notloop", "not_loop"),
    }
    assert index.scope_of("orphan") is None
    assert index.successors("a") == ["loop"]


def test_loops_nested_in_a_circle_are_lifted_to_the_top() -> None:
    index = GraphIndex(
        graph(
            [
                node("l1", "loop", parent="l2", items_path="x"),
                node("l2", "loop", parent="l1", items_path="x"),
            ],
            [],
        )
    )
    assert {p.problem for p in index.invalid_parents} == {"cycle"}
    assert index.top_level == ["l1", "l2"]


def test_successors_by_handle() -> None:
    index = GraphIndex(
        graph(
            [node("c", "condition", expression="{value}"), llm("t"), llm("f"), llm("e")],
            [edge("c", "t", "true"), edge("c", "f", "false"), edge("c", "e", "error")],
        )
    )
    assert index.successors("c", "true") == ["t"]
    assert index.successors("c", "false") == ["f"]
    assert index.successors("c") == ["t", "f", "e"]
