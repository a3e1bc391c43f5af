"""The `Execution` aggregate: one run of one pinned workflow version.

Every state change is an event; the read endpoints and the WebSocket are views of them.
Node results may arrive twice (a redelivered message, a restarted orchestrator): the public
`record_*` methods decide whether a result is new and only then emit an event, so applying a
result twice changes nothing. Results are keyed by run key (the node id, plus the loop
iteration for nodes inside a loop body) and attempt.

Log lines: what a run says is `LogRecorded`, except the two lines every node has, "node
started" and "node finished": those are the `NodeStarted` and `NodeCompleted` events
themselves, marked `log_line` (the application derives the lines, services/executor/
application.py `logs`). Events recorded before that mark existed lack it and were followed by
a stored line instead, so old runs read exactly as they did.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

ExecutionStatus = Literal["pending", "running", "completed", "failed", "cancelled"]
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
LogLevel = Literal["debug", "info", "warn", "error"]
NODE_STARTED_LINE = "节点开始执行"
NODE_FINISHED_LINE = "节点执行完成"
MODEL_NODE_TYPES = frozenset({"llm", "agent"})


def model_tokens(output: Any) -> int:
    """The tokens a model node's output says it spent (`usage.total_tokens`), else 0."""
    usage = output.get("usage") if isinstance(output, dict) else None
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    return total if isinstance(total, int) else 0


class ExecutionFinishedError(Exception):
    """The execution already ended; nothing may change it any more."""


class Execution(Aggregate):
    class Created(Aggregate.Created):
        """The run was asked for. Version 2 added `trace` (the request's trace context);
        version 1 events, recorded before it, read back with an empty one. Events recorded
        between that change and this class declaring its version carry `trace` but no version
        mark, hence `setdefault`. How to version an event: docs/upgrades.md."""

        owner_id: UUID
        workflow_id: UUID
        workflow_version: int
        workflow_name: str
        graph: dict[str, Any]
        input_data: dict[str, Any]
        trace: dict[str, str] | None

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state.setdefault("trace", {})

    # No `class_version` on the aggregate itself: it versions snapshots, and none are taken
    # (docs/upgrades.md says what to add before turning snapshots on).

    @event(Created)
    def __init__(
        self,
        owner_id: UUID,
        workflow_id: UUID,
        workflow_version: int,
        workflow_name: str,
        graph: dict[str, Any],
        input_data: dict[str, Any],
        trace: dict[str, str] | None = None,  # None: not traced (local runs, tests)
    ) -> None:
        self.owner_id = owner_id
        self.workflow_id = workflow_id
        self.workflow_version = workflow_version
        self.workflow_name = workflow_name
        self.graph = graph
        self.input_data = input_data
        self.status: ExecutionStatus = "pending"
        self.nodes: dict[str, dict[str, Any]] = {}
        self.output_data: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.current_node: str | None = None
        self.log_count = 0
        # Model tokens spent by the run's llm and agent nodes: the token budget's count, kept
        # as results arrive so a dispatch need not sum every node record.
        self.tokens_used = 0
        # Node runs so far (each node's first start or skip, per loop iteration, and each loop
        # iteration): the per-run cap's count (AGENTFLOW_MAX_NODE_RUNS_PER_EXECUTION), kept as
        # events apply so a check need not count every record.
        self.node_runs = 0
        # The W3C trace context of the request that started the run: every node it dispatches
        # joins that trace.
        self.trace = trace or {}

    # -- commands that decide ----------------------------------------------------------------

    def record_node_started(
        self, run_key: str, node_id: str, node_type: str, attempt: int, inputs: dict[str, Any]
    ) -> bool:
        self.check_not_finished()
        known = self.nodes.get(run_key)
        if known is not None and known["attempt"] >= attempt:
            return False
        if self.status == "pending":
            self._started()
        # A node's first start is a log line (a loop says more: it records its own).
        log_line = attempt == 1 and node_type != "loop"
        self._node_started(run_key, node_id, node_type, attempt, inputs, log_line)
        return True

    def record_node_completed(
        self,
        run_key: str,
        attempt: int,
        output: Any,
        duration_ms: int,
        branch: str | None = None,
        *,
        log_line: bool = False,
    ) -> bool:
        """`log_line`: the node succeeded, and this is its "node finished" line too."""
        if self.status in FINAL_STATUSES or not self._is_current(run_key, attempt):
            return False
        self._node_completed(run_key, attempt, output, duration_ms, branch, log_line)
        return True

    def record_node_failed(
        self, run_key: str, attempt: int, error: str, duration_ms: int, final: bool
    ) -> bool:
        if self.status in FINAL_STATUSES or not self._is_current(run_key, attempt):
            return False
        self._node_failed(run_key, attempt, error, duration_ms, final)
        return True

    def record_iteration_started(self, run_key: str, index: int) -> bool:
        state = self._loop_state(run_key)
        if state is None or index < state["next"] or index >= state["count"]:
            return False
        self._iteration_started(run_key, index)
        return True

    def record_iteration_finished(
        self, run_key: str, index: int, ok: bool, result: Any, error: str | None
    ) -> bool:
        state = self._loop_state(run_key)
        if state is None or index not in state["running"]:
            return False
        self._iteration_finished(run_key, index, ok, result, error)
        return True

    def _loop_state(self, run_key: str) -> dict[str, Any] | None:
        node = self.nodes.get(run_key)
        if self.status in FINAL_STATUSES or node is None or node["status"] != "running":
            return None
        state: dict[str, Any] | None = node.get("loop")
        return state

    def record_node_skipped(self, run_key: str, node_id: str, node_type: str, reason: str) -> bool:
        if self.status in FINAL_STATUSES or run_key in self.nodes:
            return False
        self._node_skipped(run_key, node_id, node_type, reason)
        return True

    def finish(self, output_data: dict[str, Any]) -> bool:
        if self.status in FINAL_STATUSES:
            return False
        self._completed(output_data)
        return True

    def fail(self, message: str, node_id: str | None = None) -> bool:
        if self.status in FINAL_STATUSES:
            return False
        self._failed({"message": message, "node_id": node_id})
        return True

    def resume(self, by: str) -> bool:
        """Carry a failed run on from where it failed: completed nodes keep their outputs
        (nothing they did is paid for twice); failed nodes get a next attempt; nodes skipped
        because of the failure are decided again."""
        if self.status != "failed":
            return False
        self._resumed(by)
        return True

    def cancel(self, by: str) -> bool:
        if self.status in FINAL_STATUSES:
            return False
        self._cancelled(by)
        return True

    # -- events ------------------------------------------------------------------------------

    @event("Started")
    def _started(self) -> None:
        self.status = "running"

    @event("NodeStarted")
    def _node_started(
        self,
        run_key: str,
        node_id: str,
        node_type: str,
        attempt: int,
        inputs: dict[str, Any],
        log_line: bool = False,
    ) -> None:
        if run_key not in self.nodes:
            self.node_runs += 1
        self.nodes[run_key] = {
            "node_id": node_id,
            "node_type": node_type,
            "status": "running",
            "attempt": attempt,
            "inputs": inputs,
            "output": None,
            "branch": None,
            "error": None,
            "duration_ms": None,
        }
        if node_type == "loop":
            count = len(inputs.get("items") or [])
            self.nodes[run_key]["loop"] = {
                "count": count, "next": 0, "running": [], "results": {}, "errors": {}
            }  # fmt: skip
        self.current_node = node_id

    @event("IterationStarted")
    def _iteration_started(self, run_key: str, index: int) -> None:
        self.node_runs += 1
        state = self.nodes[run_key]["loop"]
        state["next"] = max(state["next"], index + 1)
        state["running"].append(index)

    @event("IterationFinished")
    def _iteration_finished(
        self, run_key: str, index: int, ok: bool, result: Any, error: str | None
    ) -> None:
        state = self.nodes[run_key]["loop"]
        state["running"].remove(index)
        if ok:
            state["results"][index] = result
        else:
            state["errors"][index] = error

    @event("NodeCompleted")
    def _node_completed(
        self,
        run_key: str,
        attempt: int,
        output: Any,
        duration_ms: int,
        branch: str | None,
        log_line: bool = False,
    ) -> None:
        node = self.nodes[run_key]
        node.update(status="completed", output=output, duration_ms=duration_ms, branch=branch)
        if node["node_type"] in MODEL_NODE_TYPES:
            self.tokens_used += model_tokens(output)

    @event("NodeFailed")
    def _node_failed(
        self, run_key: str, attempt: int, error: str, duration_ms: int, final: bool
    ) -> None:
        node = self.nodes[run_key]
        # A failure that will be retried leaves the node running for its next attempt.
        node.update(error=error, duration_ms=duration_ms, status="failed" if final else "retrying")

    @event("NodeSkipped")
    def _node_skipped(self, run_key: str, node_id: str, node_type: str, reason: str) -> None:
        self.node_runs += 1
        self.nodes[run_key] = {
            "node_id": node_id,
            "node_type": node_type,
            "status": "skipped",
            "attempt": 0,
            "inputs": None,
            "output": None,
            "branch": None,
            "error": None,
            "duration_ms": None,
            "reason": reason,
        }

    @event("LogRecorded")
    def record_log(
        self,
        level: LogLevel,
        message: str,
        node_id: str | None = None,
        node_type: str | None = None,
        duration_ms: int | None = None,
    ) -> None:
        self.log_count += 1

    @event("Completed")
    def _completed(self, output_data: dict[str, Any]) -> None:
        self.status = "completed"
        self.output_data = output_data
        self.current_node = None

    @event("Failed")
    def _failed(self, error: dict[str, Any]) -> None:
        self.status = "failed"
        self.error = error
        self.current_node = None

    @event("Resumed")
    def _resumed(self, by: str) -> None:
        for run_key, node in list(self.nodes.items()):
            if node["status"] == "failed" and node["node_type"] == "loop":
                self._resume_loop(run_key, node)
            elif node["status"] == "failed":
                node["status"] = "retrying"
            elif node["status"] == "skipped":
                del self.nodes[run_key]
        self.status = "running"
        self.error = None

    def _resume_loop(self, run_key: str, node: dict[str, Any]) -> None:
        """A failed loop runs its failed iterations again (their failed nodes get a next
        attempt); one that failed before it had items is started afresh."""
        if "items" not in (node["inputs"] or {}):
            del self.nodes[run_key]
            return
        state = node["loop"]
        state["running"].extend(sorted(state["errors"]))
        state["errors"] = {}
        node.update(status="running", error=None)

    @event("Cancelled")
    def _cancelled(self, by: str) -> None:
        self.status = "cancelled"
        self.current_node = None

    # -- invariants and views ----------------------------------------------------------------

    def check_not_finished(self) -> None:
        if self.status in FINAL_STATUSES:
            raise ExecutionFinishedError(str(self.id))

    def _is_current(self, run_key: str, attempt: int) -> bool:
        node = self.nodes.get(run_key)
        return node is not None and node["attempt"] == attempt and node["status"] == "running"

    @property
    def execution_time_ms(self) -> int | None:
        """Milliseconds from creation to the end; None while the run goes on."""
        if self.status not in FINAL_STATUSES:
            return None
        return int((self.modified_on - self.created_on).total_seconds() * 1000)

    @property
    def progress(self) -> int:
        """Share of the workflow's top-level nodes that finished (completed, failed, skipped)."""
        if self.status == "completed":
            return 100
        top_level = [n for n in self.graph.get("nodes", []) if not n.get("parentId")]
        if not top_level:
            return 0
        finished = sum(
            1
            for n in top_level
            if self.nodes.get(n["id"], {}).get("status") in ("completed", "failed", "skipped")
        )
        return min(99, int(100 * finished / len(top_level)))
