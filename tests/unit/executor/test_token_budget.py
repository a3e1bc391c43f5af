"""The token budget per run: model nodes go out with what is left of it, and none goes out
once it is spent (AGENTFLOW_MAX_TOKENS_PER_EXECUTION)."""

from __future__ import annotations

import uuid
from itertools import pairwise
from typing import Any

from services.executor.domain import Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.node_run import NodeResult
from services.executor.progression import Progression, apply_result
from services.executor.worker.runners.llm import within_budget
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph
from shared.workflow.nodes import AgentData, LLMData


def model_node(node_id: str, **data: Any) -> dict[str, Any]:
    config = {"provider": "deepseek", "model": "deepseek-chat", "prompt": "hi", **data}
    return {"id": node_id, "type": "llm", "position": {"x": 0, "y": 0}, "data": config}


def three_calls(**second: Any) -> dict[str, Any]:
    """start → ask-1 → ask-2 → ask-3 → end."""
    ids = ["ask-1", "ask-2", "ask-3"]
    nodes = [
        {"id": "start-1", "type": "start", "position": {"x": 0, "y": 0}, "data": {}},
        model_node("ask-1"),
        model_node("ask-2", **second),
        model_node("ask-3"),
        {"id": "end-1", "type": "end", "position": {"x": 0, "y": 0}, "data": {}},
    ]
    chain = ["start-1", *ids, "end-1"]
    edges = [{"id": f"{a}->{b}", "source": a, "target": b} for a, b in pairwise(chain)]
    return {"nodes": nodes, "edges": edges}


class Run:
    """An execution driven as the orchestrator drives it, the model's answers given here."""

    def __init__(self, graph: dict[str, Any], budget: int | None) -> None:
        self.execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", graph, {})
        self.index = GraphIndex(WorkflowGraph.model_validate(graph))
        self.budget = budget
        self.sent: list[NodeRunCommand] = []
        self._decide()

    def _decide(self) -> None:
        progression = Progression(self.execution, self.index, inline=True, token_budget=self.budget)
        progression.run()
        self.sent.extend(progression.commands)

    def answer(self, tokens: int) -> None:
        """The model answers the last node sent, having spent `tokens`."""
        command = self.sent[-1]
        usage = {"prompt_tokens": tokens - 1, "completion_tokens": 1, "total_tokens": tokens}
        output = {"text": "ok", "model": "deepseek-chat", "usage": usage}
        result = NodeRunResult.succeeded(
            str(self.execution.id), command.run_key, command.attempt, NodeResult(output), 5
        )
        apply_result(self.execution, self.index, result)
        self._decide()


def test_each_model_node_goes_out_with_what_is_left_of_the_budget() -> None:
    run = Run(three_calls(), budget=100)
    run.answer(30)
    run.answer(50)
    run.answer(10)
    assert [(c.node_id, c.token_budget) for c in run.sent] == [
        ("ask-1", 100),
        ("ask-2", 70),
        ("ask-3", 20),
    ]
    assert run.execution.status == "completed"
    assert run.execution.tokens_used == 90


def test_once_the_budget_is_spent_no_model_call_goes_out_and_the_run_fails_saying_why() -> None:
    run = Run(three_calls(), budget=100)
    run.answer(60)
    run.answer(45)  # 105: over, by this answer's tokens
    assert [c.node_id for c in run.sent] == ["ask-1", "ask-2"]
    assert run.execution.status == "failed"
    failed = run.execution.nodes["ask-3"]
    assert failed["status"] == "failed"
    assert "token" in failed["error"]
    assert "105" in failed["error"]
    assert "100" in failed["error"]
    assert run.execution.error is not None
    assert run.execution.error["node_id"] == "ask-3"


def test_a_node_set_to_carry_on_carries_on_with_its_default_when_the_budget_is_spent() -> None:
    run = Run(three_calls(on_error="continue", default_output={"text": "skipped"}), budget=50)
    run.answer(50)
    assert [c.node_id for c in run.sent] == ["ask-1"]  # ask-2 carried on; ask-3 is refused too
    assert run.execution.nodes["ask-2"]["output"] == {"text": "skipped"}
    assert run.execution.nodes["ask-3"]["status"] == "failed"
    assert run.execution.status == "failed"


def test_without_a_budget_nothing_is_counted_against_the_run() -> None:
    run = Run(three_calls(), budget=None)
    for _ in range(3):
        run.answer(10_000_000)
    assert [c.token_budget for c in run.sent] == [None, None, None]
    assert run.execution.status == "completed"


def test_a_call_may_not_ask_for_more_tokens_than_are_left() -> None:
    asked = LLMData.model_validate({"prompt": "hi", "max_tokens": 500})
    assert within_budget(asked, 200).max_tokens == 200
    assert within_budget(asked, 800) is asked
    assert within_budget(asked, None) is asked
    unbounded = AgentData.model_validate({"prompt": "hi"})
    assert within_budget(unbounded, 64).max_tokens == 64
