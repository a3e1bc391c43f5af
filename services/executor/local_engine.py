"""Run a workflow in one process, with no bus and no store: the same decisions
(`Progression`) and the same node runners, called directly.

For tests of the decisions, and for benchmarks as the baseline that shows what the bus, the
store and the workers cost (docs/benchmarks.md).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from services.executor.domain import Execution
from services.executor.inline import run_inline
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.progression import Progression, apply_result
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph

NodeRunner = Callable[[NodeRunCommand], NodeRunResult]


def run_builtin_command(command: NodeRunCommand) -> NodeRunResult:
    """A control node's attempt, as the orchestrator runs it inline."""
    result, _ = run_inline(
        command.execution_id,
        command.run_key,
        command.attempt,
        command.node_type,
        command.data,
        command.context(),
        "en" if command.language == "en" else "zh",
    )
    return result


def run_locally(
    graph: dict[str, Any],
    input_data: dict[str, Any],
    runner: NodeRunner = run_builtin_command,
    *,
    inline: bool = False,
) -> Execution:
    """Run to the end (retries at once, without their backoff) and return the execution.
    `inline`: control nodes run within the decision pass, as the orchestrator runs them;
    otherwise every node goes to `runner`, as to a worker."""
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "local", graph, input_data)
    return drive(execution, runner, inline=inline)


def drive(
    execution: Execution,
    runner: NodeRunner = run_builtin_command,
    *,
    recover: bool = False,
    inline: bool = False,
) -> Execution:
    """Carry an execution on until nothing is left to run (`recover`: as after a restart or
    a resume, re-sending what was in flight)."""
    index = GraphIndex(WorkflowGraph.model_validate(execution.graph))
    pending: deque[NodeRunCommand] = deque()
    while True:
        progression = Progression(execution, index, inline=inline)
        progression.run(recover=recover)
        recover = False
        pending.extend(progression.commands)
        if not pending:
            return execution
        command = pending.popleft()
        _, delay = apply_result(execution, index, runner(command))
        if delay is not None:
            again = Progression(execution, index, inline=inline)
            again.start_again(command.run_key, command.attempt + 1)
            pending.extend(again.commands)
