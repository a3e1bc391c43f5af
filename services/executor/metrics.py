"""The executor's Prometheus metrics. Labels are bounded: node types, outcomes, providers and
model names, never ids."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EXECUTIONS = Counter(
    "agentflow_executions_total",
    "Execution lifecycle events recorded by the executor api.",
    ["event"],  # created, started, completed, failed, cancelled, resumed
)
NODE_RUNS = Counter(
    "agentflow_node_runs_total",
    "Node attempts finished, by workers or (control nodes) inline by the orchestrator.",
    ["node_type", "outcome", "runner"],  # outcome: ok, failed, retryable, timeout, gave_up
)
NODE_RUN_SECONDS = Histogram(
    "agentflow_node_run_seconds",
    "Wall time of one node attempt.",
    ["node_type", "runner"],  # runner: worker, orchestrator
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
NODE_QUEUE = Gauge(
    "agentflow_node_queue_messages",
    "Node-run commands in the NODE_RUNS work queue, by state (as the workers' consumer sees).",
    ["state"],  # pending (not yet delivered), in_flight (delivered, not acked), redelivered
)
LLM_CALLS = Counter(
    "agentflow_llm_calls_total",
    "Model calls (a call with its inner retries counts once).",
    ["provider", "model", "outcome"],  # ok, error
)
LLM_SECONDS = Histogram(
    "agentflow_llm_call_seconds",
    "Wall time of one model call, retries included.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300),
)
LLM_TOKENS = Counter(
    "agentflow_llm_tokens_total",
    "Tokens the providers reported.",
    ["provider", "model", "kind"],  # prompt, completion
)

_EXECUTION_EVENTS = {
    "Execution.Created": "created",
    "Execution.Started": "started",
    "Execution.Completed": "completed",
    "Execution.Failed": "failed",
    "Execution.Cancelled": "cancelled",
    "Execution.Resumed": "resumed",
}


def count_execution_event(qualname: str) -> None:
    kind = _EXECUTION_EVENTS.get(qualname)
    if kind is not None:
        EXECUTIONS.labels(kind).inc()


def bounded(label: str, limit: int = 64) -> str:
    """A user-chosen label value (a model name) cut to a sane length."""
    return label[:limit] or "unknown"
