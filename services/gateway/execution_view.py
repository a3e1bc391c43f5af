"""What a live-update socket knows of its execution: the record read on connect, carried
forward by the execution's events as they arrive, so no status needs another read.

The fold repeats what `services/executor/domain.py` does when it applies the same events, for
the fields a socket's messages carry: status, progress (the share of top-level nodes finished:
completed, failed or skipped), current node, and at the end output, error and duration. What
the events do not say, it does not guess: `stale` says when only a fresh read will do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

FINAL_STATUSES: Final = frozenset({"completed", "failed", "cancelled"})
_FINISHED_NODES: Final = frozenset({"completed", "failed", "skipped"})
# Events after which the share of finished top-level nodes may differ.
_MOVES_PROGRESS: Final = frozenset(
    {"NodeCompleted", "NodeFailed", "NodeSkipped", "ExecutionCompleted", "ExecutionResumed"}
)


@dataclass
class _Node:
    node_id: str | None
    node_type: str | None
    status: str


@dataclass
class ExecutionView:
    status: str
    current_node: str | None
    progress: int | None  # None: it moved, and the top-level nodes are not known
    error: Any
    output_data: Any
    created_at: datetime | None
    changed_at: datetime | None  # the last change folded in (the record's `updated_at`)
    nodes: dict[str, _Node] = field(default_factory=dict)
    # The ids of the workflow's top-level nodes (ExecutionCreated says them); None: unknown.
    top_level: frozenset[str] | None = None
    newest_version: int | None = None  # the highest event version seen
    missed: bool = False  # a version was skipped: an event never arrived
    # The read's own `execution_time`, while no event has been folded in since.
    read_execution_time: int | None = None

    @classmethod
    def of(cls, record: dict[str, Any]) -> ExecutionView:
        view = cls(
            status="", current_node=None, progress=None, error=None, output_data=None,
            created_at=None, changed_at=None,
        )  # fmt: skip
        view.reset(record)
        return view

    def reset(self, record: dict[str, Any]) -> None:
        """Take everything from a fresh read of the execution (`GET /executions/{id}`)."""
        self.status = record["status"]
        self.current_node = record["current_node"]
        self.progress = record["progress"]
        self.error = record["error"]
        self.output_data = record["output_data"]
        self.created_at = _instant(record.get("created_at"))
        self.changed_at = _instant(record.get("updated_at"))
        self.nodes = {
            key: _Node(node.get("node_id"), node.get("node_type"), node.get("status", ""))
            for key, node in (record.get("nodes") or {}).items()
        }
        self.read_execution_time = record.get("execution_time")
        self.missed = False

    # -- what the events say -------------------------------------------------------------

    def is_new(self, envelope: dict[str, Any]) -> bool:
        """False for an event seen before (its version is not above the highest seen); one
        that skips a version marks the view as having missed an event."""
        version = envelope.get("version")
        if not isinstance(version, int):
            return True
        newest = self.newest_version
        if newest is not None and version <= newest:
            return False
        if newest is not None and version > newest + 1:
            self.missed = True
        self.newest_version = version
        return True

    def learn_top_level(self, data: dict[str, Any]) -> None:
        if self.top_level is None:
            self.top_level = top_level_of(data)

    def fold(self, envelope: dict[str, Any]) -> None:
        """Apply one event, unless the state already holds it (it happened before the read
        this state comes from)."""
        kind = envelope.get("type", "")
        data: dict[str, Any] = envelope.get("data") or {}
        if kind == "ExecutionCreated":
            self.learn_top_level(data)
        at = _instant(envelope.get("occurred_at"))
        if at is not None and self.changed_at is not None and at <= self.changed_at:
            return
        self._apply(kind, data)
        self.read_execution_time = None
        if at is not None:
            self.changed_at = at
        if kind in _MOVES_PROGRESS:
            self.progress = self._progress()

    def _apply(self, kind: str, data: dict[str, Any]) -> None:
        run_key = str(data.get("run_key", ""))
        if kind == "ExecutionStarted":
            self.status = "running"
        elif kind == "NodeStarted":
            self.nodes[run_key] = _Node(data.get("node_id"), data.get("node_type"), "running")
            self.current_node = data.get("node_id")
        elif kind == "NodeCompleted":
            self._set_node(run_key, "completed")
        elif kind == "NodeFailed":
            self._set_node(run_key, "failed" if data.get("final") else "retrying")
        elif kind == "NodeSkipped":
            self.nodes[run_key] = _Node(data.get("node_id"), data.get("node_type"), "skipped")
        elif kind == "ExecutionCompleted":
            self.status, self.current_node = "completed", None
            self.output_data = data.get("output_data")
        elif kind == "ExecutionFailed":
            self.status, self.current_node = "failed", None
            self.error = data.get("error")
        elif kind == "ExecutionCancelled":
            self.status, self.current_node = "cancelled", None
        elif kind == "ExecutionResumed":
            # Failed nodes run again and skipped ones are decided again: none is finished.
            self.nodes = {
                key: _Node(
                    node.node_id,
                    node.node_type,
                    "retrying" if node.status == "failed" else node.status,
                )
                for key, node in self.nodes.items()
                if node.status != "skipped"
            }
            self.status, self.error = "running", None

    def _set_node(self, run_key: str, status: str) -> None:
        node = self.nodes.get(run_key)
        if node is None:
            self.missed = True  # its start never arrived
            return
        node.status = status

    def _progress(self) -> int | None:
        if self.status == "completed":
            return 100
        if self.top_level is None:
            return None
        if not self.top_level:
            return 0
        finished = sum(
            1
            for node_id in self.top_level
            if (node := self.nodes.get(node_id)) is not None and node.status in _FINISHED_NODES
        )
        return min(99, int(100 * finished / len(self.top_level)))

    # -- what the socket sends -----------------------------------------------------------

    @property
    def stale(self) -> bool:
        """Whether a status built now could be wrong: an event was missed, or progress moved
        without the top-level nodes known."""
        return self.missed or self.progress is None

    def node_of(self, run_key: str) -> tuple[str | None, str | None]:
        """The node id and type of a run key (None, None when unknown)."""
        node = self.nodes.get(run_key)
        return (node.node_id, node.node_type) if node is not None else (None, None)

    def status_data(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "progress": self.progress,
            "current_node": self.current_node,
        }

    def final_message(self) -> dict[str, Any]:
        return {
            "type": self.status,
            "data": {
                "status": self.status,
                "output_data": self.output_data,
                "error": self.error,
                "execution_time": self._execution_time(),
            },
        }

    def _execution_time(self) -> int | None:
        """Milliseconds from creation to the last change, as the executor computes it."""
        if self.read_execution_time is not None:
            return self.read_execution_time
        created, changed = self.created_at, self.changed_at
        if self.status not in FINAL_STATUSES or created is None or changed is None:
            return None
        return int((changed - created).total_seconds() * 1000)


def top_level_of(data: Any) -> frozenset[str] | None:
    """The top-level node ids an ExecutionCreated payload names, if it names them."""
    nodes = data.get("top_level_nodes") if isinstance(data, dict) else None
    return frozenset(str(node) for node in nodes) if isinstance(nodes, list) else None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
