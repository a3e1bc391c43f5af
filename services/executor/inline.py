"""Control nodes run where the decisions are made, the way Temporal runs local activities.

start, input, condition, transform (all but its `data_source` mode), output and end are pure
functions of their config and context that take microseconds. Sending each one through
`NODE_RUNS` to a worker and its result back through `NODE_RESULTS` would cost two NATS
round trips and two saves per node; the orchestrator runs them inside its decision pass
instead, so a stretch of control nodes is stored in one save. `llm`, `agent` and data-source
nodes still go to workers. What a user sees is the same either way: the same events, log
lines, outputs, retries and `on_error` handling (docs/executions.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from services.executor.messages import NODE_INTERNAL_ERROR, NodeRunResult, new_incident_id
from services.executor.node_kinds import NODE_KINDS, run_control
from services.executor.node_run import NodeRunError
from shared.i18n import Language, LocalizedError
from shared.workflow.references import RuntimeContext

log = logging.getLogger("agentflow.executor.inline")


@dataclass(frozen=True)
class InlineRun:
    """One control-node attempt run in a decision pass: what metrics and traces report."""

    node_id: str
    node_type: str
    run_key: str
    attempt: int
    outcome: str  # ok, failed, retryable
    started_ns: int  # wall clock (time.time_ns), as spans want it
    ended_ns: int

    @property
    def seconds(self) -> float:
        return (self.ended_ns - self.started_ns) / 1e9


def runs_inline(node_type: str, data: dict[str, Any]) -> bool:
    """Whether the orchestrator runs this node itself rather than sending it to a worker."""
    kind = NODE_KINDS.get(node_type)
    return kind is not None and kind.runs_inline(data)


def run_inline(
    execution_id: str,
    run_key: str,
    attempt: int,
    node_type: str,
    data: dict[str, Any],
    context: RuntimeContext,
    language: Language = "zh",
) -> tuple[NodeRunResult, str]:
    """One attempt of a control node as a result, never an exception, with its outcome
    (ok, failed, retryable) for the node-run metrics."""
    started = time.perf_counter()
    try:
        result = run_control(node_type, data, context)
    except NodeRunError as exc:
        failure = NodeRunResult.failed(
            execution_id,
            run_key,
            attempt,
            exc.render(language),
            _ms(started),
            retryable=exc.retryable,
            logs=exc.logs,
        )
        return failure, "retryable" if exc.retryable else "failed"
    except LocalizedError as exc:  # a template or expression beyond its bounds: the user's
        error = exc.render(language)
        return NodeRunResult.failed(execution_id, run_key, attempt, error, _ms(started)), "failed"
    except Exception as exc:  # a bug in a runner fails its node, not the orchestrator
        incident = new_incident_id()
        log.exception(
            "node %s of execution %s failed unexpectedly (incident %s): %s",
            run_key,
            execution_id,
            incident,
            type(exc).__name__,
        )
        error = NODE_INTERNAL_ERROR.render(language, incident=incident)
        return NodeRunResult.failed(execution_id, run_key, attempt, error, _ms(started)), "failed"
    success = NodeRunResult.succeeded(execution_id, run_key, attempt, result, _ms(started))
    return success, "ok"


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
