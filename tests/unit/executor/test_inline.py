"""Control nodes run inline by the orchestrator give what a worker would have given: the same
events, outputs, branches, logs and failures; only llm, agent and data-source nodes leave
the pass as commands."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.executor.domain import Execution
from services.executor.inline import runs_inline
from services.executor.local_engine import run_locally
from services.executor.progression import Progression
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph
from tests.unit.executor.test_loops import MEASURE, SHOUT, edge, loop_graph, node


def five_nodes() -> dict[str, Any]:
    return {
        "nodes": [
            node("start", "start"),
            node("double", "transform", {"mode": "mapping", "mapping": {"n": "{input.n}"}}),
            node("big", "condition", {"expression": "{double.n} > 10"}),
            node("yes", "transform", {"template": "big {double.n}"}),
            node("no", "transform", {"template": "small {double.n}"}),
            node("end", "end", {"output": "{value}"}),
        ],
        "edges": [
            edge("start", "double"),
            edge("double", "big"),
            edge("big", "yes", "true"),
            edge("big", "no", "false"),
            edge("yes", "end"),
            edge("no", "end"),
        ],
    }


def failing_transform(on_error: str) -> dict[str, Any]:
    bad = {"mode": "jmespath", "source": "{input.n}", "expression": "length(@)",
           "on_error": on_error, "default_output": {"fallback": True}}  # fmt: skip
    return {
        "nodes": [node("start", "start"), node("measure", "transform", bad), node("end", "end")],
        "edges": [edge("start", "measure"), edge("measure", "end")],
    }


GRAPHS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "branch taken": (five_nodes(), {"n": 42}),
    "branch not taken": (five_nodes(), {"n": 3}),
    "loop": (
        loop_graph(
            {"items_path": "{input.w}", "parallelism": 2},
            [MEASURE, SHOUT],
            [edge("measure", "shout")],
        ),
        {"w": ["a", "bb", "ccc", "dddd"]},
    ),
    "failure stops the run": (failing_transform("stop"), {"n": 5}),
    "failure carries on": (failing_transform("continue"), {"n": 5}),
}


def story(execution: Execution) -> list[tuple[Any, ...]]:
    """What a user can see of a run: its events in order, minus timings."""
    seen: list[tuple[Any, ...]] = []
    for event in execution.collect_events():
        fields = {k: v for k, v in vars(event).items()
                  if k not in ("originator_id", "originator_version", "timestamp",
                               "duration_ms", "trace", "owner_id", "workflow_id")}  # fmt: skip
        seen.append((type(event).__qualname__, sorted(fields.items(), key=lambda kv: kv[0])))
    return seen


@pytest.mark.parametrize("name", GRAPHS)
def test_inline_runs_tell_the_same_story_as_worker_runs(name: str) -> None:
    graph, input_data = GRAPHS[name]
    by_workers = run_locally(graph, input_data)
    inline = run_locally(graph, input_data, inline=True)
    assert inline.status == by_workers.status
    assert inline.output_data == by_workers.output_data
    assert inline.error == by_workers.error
    inline_story, workers_story = story(inline), story(by_workers)
    if name == "loop":  # parallel iterations interleave differently; each one's events agree
        assert sorted(map(repr, inline_story)) == sorted(map(repr, workers_story))
    else:
        assert repr(inline_story) == repr(workers_story)


def test_a_run_of_control_nodes_finishes_in_one_pass_with_nothing_to_send() -> None:
    graph = five_nodes()
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", graph, {"n": 42})
    progression = Progression(execution, GraphIndex(WorkflowGraph.model_validate(graph)),
                              inline=True)  # fmt: skip
    progression.run()
    assert progression.commands == []
    assert execution.status == "completed"
    assert execution.output_data is not None
    assert "big 42" in repr(execution.output_data)
    ran = [(run.node_type, run.outcome) for run in progression.ran_inline]
    assert ran == [("start", "ok"), ("transform", "ok"), ("condition", "ok"),
                   ("transform", "ok"), ("end", "ok")]  # fmt: skip


def test_the_pass_stops_at_a_model_node_and_sends_only_it() -> None:
    graph = {
        "nodes": [node("start", "start"), node("prep", "transform", {"template": "q: {input.q}"}),
                  node("ask", "llm", {"prompt": "{prep}"}), node("end", "end")],
        "edges": [edge("start", "prep"), edge("prep", "ask"), edge("ask", "end")],
    }  # fmt: skip
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", graph, {"q": "why"})
    progression = Progression(execution, GraphIndex(WorkflowGraph.model_validate(graph)),
                              inline=True)  # fmt: skip
    progression.run()
    assert [c.node_id for c in progression.commands] == ["ask"]
    assert progression.commands[0].records["prep"] == "q: why"
    assert execution.nodes["prep"]["status"] == "completed"
    assert execution.nodes["ask"]["status"] == "running"
    assert "end" not in execution.nodes


@pytest.mark.parametrize(
    ("node_type", "data", "inline"),
    [
        ("transform", {"template": "{value}"}, True),
        ("transform", {"mode": "data_source", "data_source_id": "x"}, False),
        ("condition", {"expression": "true"}, True),
        ("llm", {"prompt": "hi"}, False),
        ("agent", {"prompt": "hi"}, False),
        ("loop", {"items_path": "{input}"}, False),
    ],
)
def test_only_control_nodes_run_inline(node_type: str, data: dict[str, Any], inline: bool) -> None:
    assert runs_inline(node_type, data) is inline
