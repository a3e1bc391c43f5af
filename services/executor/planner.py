"""Which nodes of one scope run next: a pure function of the graph and the node outcomes.

Edges carry the decision: an edge is *live* when its source completed and took the edge's
branch (a condition's `true`/`false`, or the `error` edge of a failed node whose policy follows
it), *dead* when its source was skipped or took another branch, and *open* while its source has
not finished. A node is ready when none of its incoming edges is open and at least one is live
(a join waits for all its live inputs); it is skipped when every incoming edge is dead.
Independent branches are ready together and run in parallel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from shared.workflow.graph import GraphIndex
from shared.workflow.model import HANDLE_ERROR, HANDLE_OUTPUT, Edge


class NodeState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # failed for good (retries exhausted); only an error edge goes on from it
    SKIPPED = "skipped"


FINISHED = frozenset({NodeState.COMPLETED, NodeState.FAILED, NodeState.SKIPPED})


@dataclass(frozen=True)
class Outcome:
    """What became of a node: its state and, when completed, the branch it took."""

    state: NodeState
    branch: str | None = None  # a condition's "true"/"false"; "error" for a followed failure


@dataclass(frozen=True)
class Plan:
    ready: list[str]
    skip: list[str]
    done: bool  # nothing is running or can still run in this scope


class EdgeState(StrEnum):
    OPEN = "open"
    LIVE = "live"
    DEAD = "dead"


def edge_state(edge: Edge, source: Outcome | None) -> EdgeState:
    if source is None or source.state in (NodeState.PENDING, NodeState.RUNNING):
        return EdgeState.OPEN
    handle = edge.sourceHandle
    if source.state == NodeState.COMPLETED:
        if source.branch == HANDLE_ERROR:  # failed, and its policy follows the error edge
            return EdgeState.LIVE if handle == HANDLE_ERROR else EdgeState.DEAD
        if handle == HANDLE_ERROR:
            return EdgeState.DEAD
        if handle in (None, HANDLE_OUTPUT) and source.branch is None:
            return EdgeState.LIVE
        return EdgeState.LIVE if handle == source.branch else EdgeState.DEAD
    return EdgeState.DEAD  # skipped, or failed with no way on


def plan(index: GraphIndex, outcomes: Mapping[str, Outcome], scope: str | None = None) -> Plan:
    """The next step for the nodes of `scope` (None: the top level; else a loop's body)."""
    ready: list[str] = []
    skip: list[str] = []
    for node_id in index.scope_nodes(scope):
        outcome = outcomes.get(node_id)
        if outcome is not None and outcome.state != NodeState.PENDING:
            continue
        incoming = [e for e in index.incoming[node_id] if index.scope_of(e.source) == scope]
        if not incoming:
            # Entry nodes: the start node at the top level, a body's first nodes in a loop.
            if scope is not None or index.nodes_by_id[node_id].type == "start":
                ready.append(node_id)
            else:
                skip.append(node_id)  # unreachable: nothing can ever lead to it
            continue
        states = [edge_state(e, outcomes.get(e.source)) for e in incoming]
        if EdgeState.OPEN in states:
            continue
        (ready if EdgeState.LIVE in states else skip).append(node_id)
    unfinished = [
        node_id
        for node_id in index.scope_nodes(scope)
        if node_id not in skip
        and node_id not in ready
        and outcomes.get(node_id, Outcome(NodeState.PENDING)).state not in FINISHED
    ]
    blocked = (
        not ready
        and not skip
        and all(
            outcomes.get(n, Outcome(NodeState.PENDING)).state == NodeState.PENDING
            for n in unfinished
        )
    )
    return Plan(ready=ready, skip=skip, done=(not unfinished and not ready) or blocked)
