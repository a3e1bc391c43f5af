"""Executor settings (api process and workers)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, service_port_field


class ExecutorSettings(ServiceSettings):
    service_name: ClassVar[str] = "executor"

    port: int = service_port_field(8103, "executor")
    workflows_url: str = "http://127.0.0.1:8102"
    # Current workflow versions kept in memory, current from the workflow events on the bus
    # (services/executor/workflow_source.py); one older than this is asked for again.
    workflow_cache_entries: int = Field(default=10_000, ge=0, le=1_000_000)
    workflow_cache_max_age_s: float = Field(default=300.0, gt=0, le=86_400)
    datasources_url: str = "http://127.0.0.1:8104"  # workers query data sources here

    # Per user (services/executor/limits.py): beyond these, starting a run answers 429.
    max_running_executions_per_user: int = Field(default=50, ge=1, le=100_000)
    max_executions_per_minute_per_user: int = Field(default=600, ge=1, le=1_000_000)
    # A run still going this long after it was created is failed (checked every few seconds).
    max_execution_seconds: float = Field(default=3600.0, gt=0, le=7 * 24 * 3600)
    # Caps over what a workflow may ask for: a loop's items, an agent's model turns.
    max_loop_items: int = Field(default=10_000, ge=1, le=1_000_000)
    max_agent_iterations: int = Field(default=20, ge=1, le=1000)
    # Node runs one execution may make in all: each node started or skipped, once per loop
    # iteration it is in, and each loop iteration. Loops nested in loops multiply their
    # items; beyond this the run fails (services/executor/progression.py).
    max_node_runs_per_execution: int = Field(default=100_000, ge=1, le=100_000_000)
    # Model tokens (prompt + completion, as the provider reports them) one run may spend over
    # all its llm and agent nodes; beyond it no further model call is made (0: no budget).
    max_tokens_per_execution: int = Field(default=1_000_000, ge=0, le=1_000_000_000)

    # The orchestrator runs control nodes (start, input, condition, transform, output, end)
    # itself instead of sending each to a worker: one save for a stretch of them, no round
    # trips (services/executor/inline.py). Off: every node goes through a worker.
    inline_control_nodes: bool = True

    # Executor api replicas share the runs (services/executor/partitions.py, ADR 0009): each
    # execution id falls in one of this many partitions, decided by one replica at a time; up
    # to this many replicas share the work. Set it once: every replica must use the same.
    execution_partitions: int = Field(default=16, ge=1, le=1024)
    # A replica's hold on its partitions lapses this long after it last renewed it (it renews
    # every quarter of it): a dead replica's runs are carried on by the others within it.
    partition_lease_s: float = Field(default=10.0, ge=2.0, le=300.0)
    # This replica's name in the leases ("": host name and port, stable across a restart in
    # place, so a restarted process takes its partitions straight back).
    replica_id: str = Field(default="", max_length=200)

    # Workers. A node still running after `node_ack_wait_s` without a heartbeat is presumed
    # lost with its worker and is delivered to another; heartbeats go every third of it.
    worker_concurrency: int = Field(default=16, ge=1, le=1000)
    # Workers serve no API; `/healthz`, `/readyz` (NATS connected) and `/metrics` are on
    # this port (0: none).
    worker_metrics_port: int = Field(default=8110, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"
    node_ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0)
    # On SIGTERM a worker finishes its nodes for this long, then releases the rest; keep it
    # below the pod's terminationGracePeriodSeconds.
    worker_shutdown_grace_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    node_max_deliveries: int = Field(default=5, ge=1, le=100)
    # Model calls: retries inside one attempt on 429/5xx/timeouts, with exponential backoff.
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_backoff_s: float = Field(default=0.5, ge=0.0, le=60.0)
    llm_max_backoff_s: float = Field(default=8.0, ge=0.0, le=300.0)
    # What one model answer may hold (services/executor/worker/llm/client.py ResponseLimits): beyond
    # any of these the node fails, saying which (a base URL may be anybody's server).
    llm_max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=1024**3)
    llm_max_text_chars: int = Field(default=1_000_000, ge=1, le=100_000_000)
    llm_max_tool_argument_chars: int = Field(default=256 * 1024, ge=1, le=100_000_000)
    llm_max_tool_calls: int = Field(default=128, ge=1, le=10_000)


class WorkerSettings(ExecutorSettings):
    """A worker's settings: the executor's, but it holds the data source query key and never
    the JWT signing secret (it cannot mint a user's token)."""

    holds_jwt_secret: ClassVar[bool] = False
    holds_query_key: ClassVar[bool] = True
