"""Routes of `/api/v1/execution-logs`: an execution's log lines and their summary."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.executor.deps import CurrentActor, ExecutionId, Executor
from shared.web.errors import error_responses

router = APIRouter(prefix="/api/v1/execution-logs", tags=["执行日志 execution logs"])

Level = Literal["info", "warn", "error", "debug"]
LEVELS: tuple[Level, ...] = ("info", "warn", "error", "debug")


class LogOut(BaseModel):
    id: UUID
    node_id: str | None
    node_type: str | None
    level: Level
    message: str
    timestamp: datetime
    duration_ms: int | None


class LogPage(BaseModel):
    logs: list[LogOut]
    total: int
    skip: int
    limit: int


class NodeStats(BaseModel):
    node_id: str
    node_type: str | None
    log_count: int
    total_duration_ms: int


class LogSummary(BaseModel):
    total_logs: int
    level_stats: dict[str, int]
    node_stats: list[NodeStats]
    error_logs: list[LogOut]


@router.get(
    "/executions/{execution_id}", response_model=LogPage, responses=error_responses(401, 404, 422)
)
def list_execution_logs(
    execution_id: ExecutionId,
    actor: CurrentActor,
    executor: Executor,
    level: Annotated[Level | None, Query(description="日志级别筛选")] = None,
    node_id: Annotated[str | None, Query(max_length=64, description="节点ID筛选")] = None,
    skip: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LogPage:
    """An execution's log lines, oldest first, filtered by level and node."""
    executor.visible(actor, execution_id)
    lines = [
        line
        for line in executor.logs(execution_id)
        if (level is None or line.level == level) and (node_id is None or line.node_id == node_id)
    ]
    page = [
        LogOut.model_validate(line, from_attributes=True) for line in lines[skip : skip + limit]
    ]
    return LogPage(logs=page, total=len(lines), skip=skip, limit=limit)


@router.get(
    "/executions/{execution_id}/summary",
    response_model=LogSummary,
    responses=error_responses(401, 404),
)
def get_execution_log_summary(
    execution_id: ExecutionId, actor: CurrentActor, executor: Executor
) -> LogSummary:
    """Counts by level, per-node counts and durations, and the error lines."""
    executor.visible(actor, execution_id)
    lines = executor.logs(execution_id)
    levels = Counter(line.level for line in lines)
    nodes: dict[str, NodeStats] = {}
    for line in lines:
        if line.node_id is None:
            continue
        stats = nodes.setdefault(
            line.node_id, NodeStats(node_id=line.node_id, node_type=line.node_type, log_count=0,
                                    total_duration_ms=0)
        )  # fmt: skip
        stats.log_count += 1
        stats.total_duration_ms += line.duration_ms or 0
    return LogSummary(
        total_logs=len(lines),
        level_stats={name: levels.get(name, 0) for name in LEVELS},
        node_stats=list(nodes.values()),
        error_logs=[
            LogOut.model_validate(line, from_attributes=True)
            for line in lines
            if line.level == "error"
        ],
    )
