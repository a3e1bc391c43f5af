"""Request and response bodies of `/api/v1/workflows`, as the seed's API document gives them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from services.workflows.application import EXPORT_FORMAT_VERSION
from shared.web.openapi import DocumentedAs
from shared.workflow.model import MAX_EDGES, MAX_NODES, Edge, Node
from shared.workflow.validation import Issue

SEED_EXAMPLE: dict[str, Any] = {
    "name": "文本处理工作流",
    "description": "处理用户输入的文本",
    "nodes": [
        {"id": "start-1", "type": "start", "position": {"x": 0, "y": 0}, "data": {"label": "开始"}},
        {
            "id": "llm-1",
            "type": "llm",
            "position": {"x": 200, "y": 0},
            "data": {
                "label": "LLM处理",
                "provider": "deepseek",
                "model": "deepseek-chat",
                "prompt": "请总结以下文本:{input}",
            },
        },
        {"id": "end-1", "type": "end", "position": {"x": 400, "y": 0}, "data": {"label": "结束"}},
    ],
    "edges": [
        {"id": "e1", "source": "start-1", "target": "llm-1"},
        {"id": "e2", "source": "llm-1", "target": "end-1"},
    ],
}

Name: Any = Field(min_length=1, max_length=200)
Description: Any = Field(default="", max_length=5000)
UNIQUE_IDS = "Node ids are unique among the nodes, edge ids among the edges (422 DUPLICATE_ID)."
Nodes: Any = Field(default_factory=list, max_length=MAX_NODES, description=UNIQUE_IDS)
Edges: Any = Field(default_factory=list, max_length=MAX_EDGES, description=UNIQUE_IDS)


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SEED_EXAMPLE]})

    name: str = Name
    description: str = Description
    nodes: list[Node] = Nodes
    edges: list[Edge] = Edges


class WorkflowUpdate(BaseModel):
    """Fields left out keep their value. A change of content makes a new version."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    nodes: list[Node] | None = Field(default=None, max_length=MAX_NODES)
    edges: list[Edge] | None = Field(default=None, max_length=MAX_EDGES)
    comment: str = Field(default="", max_length=1000, description="Why; shown in the versions.")
    expected_version: int | None = Field(
        default=None,
        ge=1,
        description="If given, the update applies only if the workflow is still at this "
        "version; otherwise 409 VERSION_CONFLICT.",
    )


class WorkflowValidate(BaseModel):
    name: str | None = None
    nodes: list[Node] = Nodes
    edges: list[Edge] = Edges


class WorkflowOut(BaseModel):
    id: UUID
    name: str
    description: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    version: int
    status: Literal["draft", "published", "running", "stopped"]
    owner_id: UUID
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    message: str


class StatusChange(BaseModel):
    status: Literal["draft", "published", "stopped"] = Field(
        description="`published` requires a valid workflow; `running` is set by executions."
    )


class ValidationOut(BaseModel):
    valid: bool
    errors: list[Issue]
    warnings: list[Issue]


class TemplateOut(BaseModel):
    id: str
    name: str
    description: str
    category: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class ExportedWorkflow(BaseModel):
    """The export format (version 1). Import ignores `id` and the timestamps."""

    model_config = ConfigDict(extra="ignore")

    format_version: int = Field(
        ge=1,
        description="A newer version than this platform's answers 422 IMPORT_UNSUPPORTED_FORMAT.",
        # Checked by the route before the model (for its own error code); stated here too.
        json_schema_extra={"maximum": EXPORT_FORMAT_VERSION},
    )
    name: str = Name
    description: str = Description
    nodes: list[Node] = Nodes
    edges: list[Edge] = Edges
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ExportOut(BaseModel):
    workflow: dict[str, Any]
    exported_at: datetime


class ImportIn(BaseModel):
    # Read as a plain object and checked by the route, which answers IMPORT_MALFORMED or
    # IMPORT_UNSUPPORTED_FORMAT for it; documented as the export format it must be.
    workflow: Annotated[dict[str, Any], DocumentedAs(ExportedWorkflow)] = Field(
        description="What `GET /{id}/export` returned as `workflow`."
    )
    name: str | None = Field(default=None, min_length=1, max_length=200, description="Rename.")


class Author(BaseModel):
    id: str
    username: str


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    author: Author
    comment: str
    summary: str
    kind: Literal["created", "updated", "rolled_back"]
    rolled_back_to: int | None = None


class VersionDetailOut(VersionOut):
    name: str
    description: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


class RollbackIn(BaseModel):
    comment: str = Field(default="", max_length=1000)
