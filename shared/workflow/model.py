"""The stored shape of a workflow: React Flow nodes and edges, as the seed's API document shows.

These models are deliberately permissive (unknown UI fields round-trip, unknown node types are
storable) because a draft may be saved in any state; `validation.validate_workflow` is where
problems are reported.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

NODE_TYPES: tuple[str, ...] = (
    "start",
    "input",
    "llm",
    "condition",
    "transform",
    "loop",
    "agent",
    "output",
    "end",
)

# Source handles with a meaning. A condition's branches are "true"/"false"; any node may have
# a failure branch "error" (taken when its `on_error` is "error_edge").
HANDLE_TRUE: Final = "true"
HANDLE_FALSE: Final = "false"
HANDLE_ERROR: Final = "error"
# The ordinary output of a non-condition node: no handle, or this name (some editors name it).
HANDLE_OUTPUT: Final = "output"

MAX_NODES: Final = 2000
MAX_EDGES: Final = 10000
# Loops inside loops: every level multiplies the runs, and nobody draws more than a few.
MAX_LOOP_NESTING: Final = 10


class Position(BaseModel):
    model_config = ConfigDict(extra="allow")

    x: float = 0
    y: float = 0


class Node(BaseModel):
    """A React Flow node; `data` holds the node type's configuration (see `nodes.py`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=64)
    # Not restricted to NODE_TYPES: a draft with an unknown type is storable and reported.
    type: str
    position: Position = Field(default_factory=Position)
    data: dict[str, Any] = Field(default_factory=dict)
    # React Flow's sub-flow convention: a node whose parentId is a loop node is in its body.
    parentId: str | None = None  # noqa: N815 - React Flow's field name


class Edge(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=256)
    source: str
    target: str
    sourceHandle: str | None = None  # noqa: N815 - React Flow's field name
    targetHandle: str | None = None  # noqa: N815 - React Flow's field name


class WorkflowGraph(BaseModel):
    nodes: list[Node] = Field(default_factory=list)
    edges: list[Edge] = Field(default_factory=list)
