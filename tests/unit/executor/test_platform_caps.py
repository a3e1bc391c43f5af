"""The platform's caps over what a workflow asks for: items per loop, an agent's turns."""

from __future__ import annotations

import uuid

from services.executor.domain import Execution
from services.executor.local_engine import run_builtin_command
from services.executor.progression import Progression, apply_result
from services.executor.worker import capped
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph
from shared.workflow.nodes import AgentData
from tests.unit.executor.test_loops import SHOUT, loop_graph


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
