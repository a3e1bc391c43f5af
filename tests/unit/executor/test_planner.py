"""The planner decides what runs next from the graph and the outcomes so far."""

from __future__ import annotations

from typing import Any

from services.executor.planner import NodeState, Outcome, plan
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph

DONE = Outcome(NodeState.COMPLETED)


def index(nodes: list[tuple[str, str]], edges: list[tuple[str, str, str | None]]) -> GraphIndex:
    graph: dict[str, Any] = {
        "nodes": [{"id": i, "type": t} for i, t in nodes],
        "edges": [
            {"id": f"e{n}", "source": s, "target": t, "sourceHandle": h}
            for n, (s, t, h) in enumerate(edges)
        ],
    }
    return GraphIndex(WorkflowGraph.model_validate(graph))


def run_to_end(
    graph: GraphIndex, decide: dict[str, Outcome] | None = None
) -> tuple[list[list[str]], dict[str, Outcome]]:
    """Drive the planner as the orchestrator does; return the waves of ready nodes."""
    outcomes: dict[str, Outcome] = {}
    waves: list[list[str]] = []
    for _ in range(50):
        step = plan(graph, outcomes)
        for node_id in step.skip:
            outcomes[node_id] = Outcome(NodeState.SKIPPED)
        if step.ready:
            waves.append(sorted(step.ready))
            for node_id in step.ready:
                outcomes[node_id] = (decide or {}).get(node_id, DONE)
        if step.done:
            return waves, outcomes
    raise AssertionError("planner never finished")


def test_a_chain_runs_in_order() -> None:
    graph = index(
        [("start-1", "start"), ("llm-1", "llm"), ("end-1", "end")],
        [("start-1", "llm-1", None), ("llm-1", "end-1", None)],
    )
    waves, outcomes = run_to_end(graph)
    assert waves == [["start-1"], ["llm-1"], ["end-1"]]
    assert all(o.state == NodeState.COMPLETED for o in outcomes.values())


def test_nothing_runs_past_a_running_node() -> None:
    graph = index([("start-1", "start"), ("end-1", "end")], [("start-1", "end-1", None)])
    step = plan(graph, {"start-1": Outcome(NodeState.RUNNING)})
    assert (step.ready, step.skip, step.done) == ([], [], False)


def test_condition_takes_one_branch_and_skips_the_other() -> None:
    graph = index(
        [("start-1", "start"), ("c", "condition"), ("yes", "llm"), ("no", "llm"),
         ("after-no", "llm"), ("end-1", "end")],
        [("start-1", "c", None), ("c", "yes", "true"), ("c", "no", "false"),
         ("no", "after-no", None), ("yes", "end-1", None), ("after-no", "end-1", None)],
    )  # fmt: skip
    waves, outcomes = run_to_end(graph, {"c": Outcome(NodeState.COMPLETED, "true")})
    assert waves == [["start-1"], ["c"], ["yes"], ["end-1"]]
    assert outcomes["no"].state == NodeState.SKIPPED
    assert outcomes["after-no"].state == NodeState.SKIPPED  # skipping propagates
    assert outcomes["end-1"].state == NodeState.COMPLETED  # the join ran on its live input

    waves, outcomes = run_to_end(graph, {"c": Outcome(NodeState.COMPLETED, "false")})
    assert waves == [["start-1"], ["c"], ["no"], ["after-no"], ["end-1"]]
    assert outcomes["yes"].state == NodeState.SKIPPED


def test_independent_branches_run_together_and_the_join_waits_for_both() -> None:
    graph = index(
        [("start-1", "start"), ("a", "llm"), ("b", "llm"), ("b2", "llm"), ("end-1", "end")],
        [("start-1", "a", None), ("start-1", "b", None), ("b", "b2", None),
         ("a", "end-1", None), ("b2", "end-1", None)],
    )  # fmt: skip
    waves, _ = run_to_end(graph)
    assert waves == [["start-1"], ["a", "b"], ["b2"], ["end-1"]]
    halfway = {"start-1": DONE, "a": DONE, "b": DONE, "b2": Outcome(NodeState.RUNNING)}
    assert plan(graph, halfway).ready == []


def test_a_failure_follows_the_error_edge_only() -> None:
    graph = index(
        [("start-1", "start"), ("risky", "llm"), ("normal", "llm"), ("fallback", "llm"),
         ("end-1", "end")],
        [("start-1", "risky", None), ("risky", "normal", None), ("risky", "fallback", "error"),
         ("normal", "end-1", None), ("fallback", "end-1", None)],
    )  # fmt: skip
    waves, outcomes = run_to_end(graph, {"risky": Outcome(NodeState.COMPLETED, "error")})
    assert waves == [["start-1"], ["risky"], ["fallback"], ["end-1"]]
    assert outcomes["normal"].state == NodeState.SKIPPED
    # Without a failure the error edge is the one not taken.
    _, outcomes = run_to_end(graph)
    assert outcomes["fallback"].state == NodeState.SKIPPED


def test_a_final_failure_stops_everything_downstream() -> None:
    graph = index(
        [("start-1", "start"), ("x", "llm"), ("end-1", "end")],
        [("start-1", "x", None), ("x", "end-1", None)],
    )
    waves, outcomes = run_to_end(graph, {"x": Outcome(NodeState.FAILED)})
    assert waves == [["start-1"], ["x"]]
    assert outcomes["end-1"].state == NodeState.SKIPPED


def test_unreachable_nodes_are_skipped_not_run() -> None:
    graph = index(
        [("start-1", "start"), ("lonely", "llm"), ("end-1", "end")],
        [("start-1", "end-1", None)],
    )
    waves, outcomes = run_to_end(graph)
    assert ["lonely"] not in waves
    assert outcomes["lonely"].state == NodeState.SKIPPED


def test_a_loop_body_is_planned_as_its_own_scope() -> None:
    graph_data: dict[str, Any] = {
        "nodes": [
            {"id": "start-1", "type": "start"},
            {"id": "loop-1", "type": "loop"},
            {"id": "first", "type": "llm", "parentId": "loop-1"},
            {"id": "second", "type": "transform", "parentId": "loop-1"},
            {"id": "end-1", "type": "end"},
        ],
        "edges": [
            {"id": "e1", "source": "start-1", "target": "loop-1"},
            {"id": "e2", "source": "first", "target": "second"},
            {"id": "e3", "source": "loop-1", "target": "end-1"},
        ],
    }
    graph = GraphIndex(WorkflowGraph.model_validate(graph_data))
    top = plan(graph, {})
    assert top.ready == ["start-1"]  # body nodes are not top-level work
    assert plan(graph, {}, scope="loop-1").ready == ["first"]
    body = plan(graph, {"first": DONE}, scope="loop-1")
    assert body.ready == ["second"]
    assert plan(graph, {"first": DONE, "second": DONE}, scope="loop-1").done
