"""Request and response bodies of `/api/v1/executions` and workflow execution."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

Status = Literal["pending", "running", "completed", "failed", "cancelled"]


class ExecuteIn(BaseModel):
    input_data: dict[str, Any] = Field(default_factory=dict, examples=[{"input": "一段文本"}])


class ExecutionCreate(ExecuteIn):
    workflow_id: UUID


class ExecutionCreated(BaseModel):
    id: UUID
    workflow_id: UUID
    status: Status
    task_id: str = Field(description="The id to follow the run by (the execution id).")


class LoopProgressOut(BaseModel):
    count: int = Field(description="Items to iterate.")
    next: int = Field(description="Iterations started so far.")
    running: list[int] = Field(description="Indexes of the iterations running now.")


class NodeRunOut(BaseModel):
    node_id: str
    node_type: str
    status: Literal["running", "retrying", "completed", "failed", "skipped"]
    attempt: int
    inputs: dict[str, Any] | None = None
    output: Any = None
    branch: str | None = None
    error: str | None = None
    duration_ms: int | None = None
    loop: LoopProgressOut | None = Field(default=None, description="Loop nodes: iterations.")


class ExecutionOut(BaseModel):
    id: UUID
    workflow_id: UUID
    workflow_version: int
    status: Status
    input_data: dict[str, Any]
    output_data: dict[str, Any] | None
    error: dict[str, Any] | None
    progress: int
    current_node: str | None
    nodes: dict[str, NodeRunOut]
    execution_time: int | None = Field(description="Milliseconds from creation to the end.")
    created_at: datetime
    updated_at: datetime


class ExecutionListItem(BaseModel):
    id: UUID
    workflow_id: UUID
    workflow_version: int
    workflow_name: str
    status: Status
    input_data: dict[str, Any]
    output_data: dict[str, Any] | None
    error: dict[str, Any] | None
    execution_time: int | None = Field(description="Milliseconds, once finished.")
    created_at: datetime
    updated_at: datetime


class StatusOut(BaseModel):
    status: Status
    progress: int = Field(ge=0, le=100)
    current_node: str | None
