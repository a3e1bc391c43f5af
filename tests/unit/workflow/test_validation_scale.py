"""A generated 500-node workflow of every kind of node validates cleanly."""

from __future__ import annotations

from typing import Any

from shared.workflow.graph import GraphIndex

from .builders import edge, graph, llm, node, validate


def big_workflow(blocks: int) -> Any:
    """start → input → blocks of (llm → condition → two branches → join transform, and a loop
    with a two-node body) → output → end. Every node references several upstream nodes."""
    nodes = [
        node("start-1", "start"),
        node("in", "input", fields=[{"name": "topic", "required": True}]),
    ]
    edges = [edge("start-1", "in")]
    previous = "in"
    for b in range(blocks):
        ask, check, yes, no, join = (
            f"{kind}-{b}" for kind in ("ask", "check", "yes", "no", "join")
        )
        loop, body1, body2 = f"loop-{b}", f"body1-{b}", f"body2-{b}"
        earlier = f" {{join-{b - 1}.summary}}" if b else ""
        nodes += [
            llm(ask, f"{{input.topic}} {{{previous}}}{earlier}"),
            node(check, "condition", expression=f"len({{{ask}.text}}) > 10 and {{value}} != null"),
            llm(yes, f"{{{ask}.text}} yes"),
            llm(no, f"{{{ask}.usage.total_tokens}} no"),
            node(
                join,
                "transform",
                mode="mapping",
                mapping={"summary": f"{{{yes}.text}}{{{no}.text}}", "q": f"{{{ask}}}"},
            ),
            node(
                loop,
                "loop",
                items_path=f"{{{ask}.json.items}}",
                parallelism=4,
                output={"r": f"{{{body2}}}"},
            ),
            llm(body1, f"{{item}} {{index}} {{{join}.summary}}", parent=loop),
            llm(body2, f"{{{body1}.text}} {{value}}", parent=loop),
        ]
        edges += [
            edge(previous, ask),
            edge(ask, check),
            edge(check, yes, "true"),
            edge(check, no, "false"),
            edge(yes, join),
            edge(no, join),
            edge(join, loop),
            edge(body1, body2),
        ]
        previous = loop
    nodes += [node("out", "output", mapping={"last": f"{{{previous}}}"}), node("end-1", "end")]
    edges += [edge(previous, "out"), edge("out", "end-1")]
    return graph(nodes, edges)


def test_a_500_node_workflow_validates_without_issues() -> None:
    g = big_workflow(62)
    assert len(g.nodes) == 500
    report = validate(g)
    assert report.errors == []
    assert report.warnings == []


def test_ancestry_in_a_large_workflow() -> None:
    index = GraphIndex(big_workflow(62))
    assert index.topological_order() is not None
    assert index.is_upstream("ask-0", "body2-61")
    assert not index.is_upstream("body1-0", "ask-61")
    assert len(index.ancestors("end-1")) == len(index.top_level) - 1


def test_a_mistake_in_a_large_workflow_is_found_and_named() -> None:
    g = big_workflow(62)
    target = next(n for n in g.nodes if n.id == "yes-30")
    target.data["prompt"] = "{no-30.text}"
    report = validate(g)
    assert [(i.code, i.node_id) for i in report.errors] == [("REFERENCE_NOT_UPSTREAM", "yes-30")]
