"""The stored shape of a workflow: React Flow nodes and edges, as the seed's API document shows.

These models are deliberately permissive (unknown UI fields round-trip, unknown node types are
storable) because a draft may be saved in any state; `validation.validate_workflow` is where
problems are reported.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Final, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, TypeAdapter, create_model
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

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
    """A React Flow node; `data` holds the node type's configuration (see `nodes.py`).

    Validated as any node (a draft is storable in any state), documented as the node a run
    accepts: one schema per node type, chosen by `type` (`documented_node`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=64)
    # Not restricted to NODE_TYPES: a draft with an unknown type is storable and reported.
    type: str
    position: Position = Field(default_factory=Position)
    data: dict[str, Any] = Field(default_factory=dict)
    # React Flow's sub-flow convention: a node whose parentId is a loop node is in its body.
    parentId: str | None = None  # noqa: N815 - React Flow's field name

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        documented = handler(TypeAdapter(documented_node()).core_schema)
        documented["description"] = (
            "A node of one of the types below; its `data` is that type's configuration "
            "(docs/workflow-model.md). A draft may be saved incomplete: `POST "
            "/api/v1/workflows/validate` reports what would stop it from running."
        )
        return documented


@cache
def documented_node() -> Any:
    """The node of each type as the OpenAPI document shows it: `type` a constant, `data` that
    type's model. A discriminated union of generated models (`LlmNode`, ...)."""
    # Imported here: the node configs import much of this package, and are only needed for
    # the document.
    from shared.workflow.nodes import NODE_DATA_MODELS

    kinds = []
    for node_type in NODE_TYPES:
        constant: Any = Literal[node_type]
        kinds.append(
            create_model(
                f"{node_type.capitalize()}Node",
                __config__=ConfigDict(extra="allow"),
                __doc__=f"A node of type `{node_type}`.",
                id=(str, Field(min_length=1, max_length=64)),
                type=(constant, ...),
                position=(Position, Field(default_factory=Position)),
                data=(NODE_DATA_MODELS[node_type], Field(default_factory=dict)),
                parentId=(
                    str | None,
                    Field(default=None, description="The loop node whose body this node is in."),
                ),
            )
        )
    return Annotated[Union[tuple(kinds)], Field(discriminator="type")]  # noqa: UP007


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
