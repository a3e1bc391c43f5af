"""The platform's caps over what a workflow asks for: items per loop, an agent's turns, node
runs per execution."""

from __future__ import annotations

import uuid

import pytest

from services.executor.domain import Execution
from services.executor.local_engine import run_builtin_command
from services.executor.progression import Progression, apply_result
from services.executor.settings import ExecutorSettings
from services.executor.worker.runners.agent import capped
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph
from shared.workflow.nodes import AgentData
from tests.unit.executor.test_loops import SHOUT, edge, loop_graph, node


def run_capped(items: list[int], cap: int) -> Execution:
    graph = loop_graph({"items_path": "{input.n}", "max_iterations": 100}, [SHOUT], [])
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", graph, {"n": items})
    index = GraphIndex(WorkflowGraph.model_validate(graph))
    while True:  # as the orchestrator does: decide, run what was sent, decide again
        progression = Progression(execution, index, max_loop_items=cap)
        progression.run()
        if not progression.commands:
            return execution
        for command in progression.commands:
            apply_result(execution, index, run_builtin_command(command))


def test_a_loop_over_more_items_than_the_platform_allows_fails_clearly() -> None:
    execution = run_capped(list(range(5)), cap=3)
    assert execution.status == "failed"
    assert "limit of 3 items per loop" in execution.nodes["loop-1"]["error"]
    assert not any(key.startswith("shout") for key in execution.nodes)  # nothing ran


def test_a_loop_within_the_cap_runs() -> None:
    execution = run_capped([1, 2, 3], cap=3)
    assert execution.status == "completed"
    assert execution.nodes["loop-1"]["output"]["results"] == ["1!", "2!", "3!"]


def test_an_agent_asks_the_model_at_most_the_platform_cap() -> None:
    wanted = AgentData.model_validate({"prompt": "hi", "max_iterations": 12})
    assert capped(wanted, 4).max_iterations == 4
    assert capped(wanted, 20) is wanted


# -- node runs per execution, across nested loops -------------------------------------------

NESTED = {
    "nodes": [
        node("start-1", "start"),
        node("rows", "loop", {"items_path": "{input.rows}", "item_variable": "row",
                              "max_iterations": 10_000}),
        node("cells", "loop", {"items_path": "{row}", "item_variable": "cell",
                               "max_iterations": 10_000}, parentId="rows"),
        node("label", "transform", {"template": "{cell}!"}, parentId="cells"),
        node("end-1", "end"),
    ],
    "edges": [edge("start-1", "rows"), edge("rows", "end-1")],
}  # fmt: skip


def run_nested(rows: list[list[int]], cap: int | None, *, inline: bool) -> Execution:
    """As the orchestrator does: decide (control nodes run within the pass when `inline`),
    run what was sent, decide again."""
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", NESTED, {"rows": rows})
    index = GraphIndex(WorkflowGraph.model_validate(NESTED))
    while True:
        progression = Progression(execution, index, language="en", inline=inline, max_node_runs=cap)
        progression.run()
        if not progression.commands:
            return execution
        for command in progression.commands:
            apply_result(execution, index, run_builtin_command(command))


@pytest.mark.parametrize("inline", [True, False])
def test_nested_loops_stop_at_the_node_run_cap(inline: bool) -> None:
    # 300 rows of 300 cells: 180,000 node runs; each loop alone is well within its caps.
    rows = [list(range(300))] * 300
    execution = run_nested(rows, cap=500, inline=inline)
    assert execution.status == "failed"
    assert execution.error is not None
    assert "limit of 500 node runs" in execution.error["message"]
    assert "AGENTFLOW_MAX_NODE_RUNS_PER_EXECUTION" in execution.error["message"]
    assert execution.node_runs == 500
    assert len(execution.nodes) < 500  # records and iterations together made the 500


def test_loop_iterations_count_even_with_an_empty_body() -> None:
    # Loops whose body is only a loop: the iterations are the work (events, results).
    graph = {**NESTED, "nodes": [n for n in NESTED["nodes"] if n["id"] != "label"]}
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", graph, {"rows": [[0] * 100] * 100})
    index = GraphIndex(WorkflowGraph.model_validate(graph))
    Progression(execution, index, inline=True, max_node_runs=300).run()
    assert execution.status == "failed"
    assert execution.node_runs == 300


def test_a_run_within_the_node_run_cap_completes_and_a_resume_cannot_pass_it() -> None:
    rows = [[1, 2], [3]]
    # start, rows, 2 row iterations, 2 cells loops, 3 cell iterations, 3 labels, end: 13
    done = run_nested(rows, cap=13, inline=True)
    assert done.status == "completed", done.error
    assert done.node_runs == 13
    stopped = run_nested(rows, cap=12, inline=True)
    assert stopped.status == "failed"
    assert stopped.resume("user")
    index = GraphIndex(WorkflowGraph.model_validate(NESTED))
    again = Progression(stopped, index, inline=True, max_node_runs=12)  # in Chinese
    again.run(recover=True)
    assert stopped.status == "failed"
    assert "节点运行次数达到上限 12" in (stopped.error or {}).get("message", "")


def test_the_node_run_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_ENVIRONMENT", "development")
    assert ExecutorSettings().max_node_runs_per_execution == 100_000
    monkeypatch.setenv("AGENTFLOW_MAX_NODE_RUNS_PER_EXECUTION", "2500")
    assert ExecutorSettings().max_node_runs_per_execution == 2500
