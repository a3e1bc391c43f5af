"""Run a workflow in one process, with no bus and no store: the same decisions
(`Progression`) and the same node runners, called directly.

For tests of the decisions, and for benchmarks as the baseline that shows what the bus, the
store and the workers cost (docs/benchmarks.md).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from services.executor.domain import Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.progression import Progression, apply_result
from services.executor.runners.builtin import NodeRunError, run_builtin
from shared.workflow.graph import GraphIndex
from shared.workflow.model import WorkflowGraph

NodeRunner = Callable[[NodeRunCommand], NodeRunResult]


def run_builtin_command(command: NodeRunCommand) -> NodeRunResult:
    """A built-in node's attempt as a worker runs it (without its timeout)."""
    started = time.perf_counter()
    fields: dict[str, Any] = {
        "execution_id": command.execution_id,
        "run_key": command.run_key,
        "attempt": command.attempt,
    }
    try:
        result = run_builtin(command.node_type, command.data, command.context())
    except NodeRunError as exc:
        elapsed = int((time.perf_counter() - started) * 1000)
        return NodeRunResult(
            **fields, ok=False, error=exc.render("en"), retryable=exc.retryable, duration_ms=elapsed
        )
    elapsed = int((time.perf_counter() - started) * 1000)
    return NodeRunResult(
        **fields,
        ok=True,
        output=result.output,
        branch=result.branch,
        duration_ms=elapsed,
        logs=list(result.logs),
    )


def run_locally(
    graph: dict[str, Any],
    input_data: dict[str, Any],
    runner: NodeRunner = run_builtin_command,
) -> Execution:
    """Run to the end (retries at once, without their backoff) and return the execution."""
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "local", graph, input_data)
    return drive(execution, runner)


def drive(
    execution: Execution, runner: NodeRunner = run_builtin_command, *, recover: bool = False
) -> Execution:
    """Carry an execution on until nothing is left to run (`recover`: as after a restart or
    a resume, re-sending what was in flight)."""
    index = GraphIndex(WorkflowGraph.model_validate(execution.graph))
    pending: deque[NodeRunCommand] = deque()
    while True:
        progression = Progression(execution, index)
        progression.run(recover=recover)
        recover = False
        pending.extend(progression.commands)
        if not pending:
            return execution
        command = pending.popleft()
        _, delay = apply_result(execution, index, runner(command))
        if delay is not None:
            again = Progression(execution, index)
            again.start_again(command.run_key, command.attempt + 1)
            pending.extend(again.commands)
