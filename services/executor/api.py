"""Routes of `/api/v1/executions` and `POST /api/v1/workflows/{id}/execute`."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Body, Query, status

from services.executor.application import StatusView
from services.executor.deps import CurrentActor, ExecutionId, Executor, Listing
from services.executor.readmodel import ExecutionQuery
from services.executor.schemas import (
    ExecuteIn,
    ExecutionCreate,
    ExecutionCreated,
    ExecutionListItem,
    ExecutionOut,
    Status,
    StatusOut,
)
from shared.web.deps import NO_NUL, RequestLanguage, Skip
from shared.web.errors import error_responses

router = APIRouter(tags=["执行 executions"])


STARTS = error_responses(401, 404, 413, 422, 429, 503)


@router.post(
    "/api/v1/workflows/{workflow_id}/execute",
    response_model=ExecutionCreated,
    status_code=status.HTTP_201_CREATED,
    responses=STARTS,
)
async def execute_workflow(
    workflow_id: UUID,
    actor: CurrentActor,
    executor: Executor,
    language: RequestLanguage,
    body: Annotated[ExecuteIn | None, Body()] = None,
) -> ExecutionCreated:
    """Run the workflow's current version; answers at once, the run goes on in the background."""
    input_data = body.input_data if body is not None else {}
    execution_id = await executor.start(actor, workflow_id, input_data, language)
    return _created(execution_id, workflow_id)


@router.post(
    "/api/v1/executions",
    response_model=ExecutionCreated,
    status_code=status.HTTP_201_CREATED,
    responses=STARTS,
)
async def create_execution(
    body: ExecutionCreate, actor: CurrentActor, executor: Executor, language: RequestLanguage
) -> ExecutionCreated:
    """Create an execution of a workflow (the same as `POST /workflows/{id}/execute`)."""
    execution_id = await executor.start(actor, body.workflow_id, body.input_data, language)
    return _created(execution_id, body.workflow_id)


def _created(execution_id: UUID, workflow_id: UUID) -> ExecutionCreated:
    return ExecutionCreated(
        id=execution_id, workflow_id=workflow_id, status="pending", task_id=str(execution_id)
    )


def _status(view: StatusView) -> StatusOut:
    return StatusOut(status=view.status, progress=view.progress, current_node=view.current_node)


@router.get(
    "/api/v1/executions",
    response_model=list[ExecutionListItem],
    responses=error_responses(401, 422),
)
def list_executions(
    actor: CurrentActor,
    listing: Listing,
    skip: Skip = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="每页记录数,最大100")] = 100,
    workflow_id: Annotated[UUID | None, Query(description="工作流ID筛选")] = None,
    status: Annotated[Status | None, Query(description="状态筛选")] = None,
    search: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="搜索关键词")
    ] = None,
) -> list[dict[str, Any]]:
    """Your executions, newest first (an admin's: everyone's), filtered and searched."""
    query = ExecutionQuery(
        owner_id=actor.owner_filter,
        skip=skip,
        limit=limit,
        workflow_id=workflow_id,
        status=status,
        search=search or None,
    )
    return listing.query(query)


@router.get(
    "/api/v1/executions/{execution_id}",
    response_model=ExecutionOut,
    responses=error_responses(401, 404),
)
def get_execution(
    execution_id: ExecutionId, actor: CurrentActor, executor: Executor
) -> ExecutionOut:
    """The full record: input, output, error, and every node's inputs, output and attempts."""
    execution = executor.visible(actor, execution_id)
    return ExecutionOut(
        id=execution.id,
        workflow_id=execution.workflow_id,
        workflow_version=execution.workflow_version,
        status=execution.status,
        input_data=execution.input_data,
        output_data=execution.output_data,
        error=execution.error,
        progress=execution.progress,
        current_node=execution.current_node,
        nodes=execution.nodes,
        execution_time=execution.execution_time_ms,
        created_at=execution.created_on,
        updated_at=execution.modified_on,
    )


@router.get(
    "/api/v1/executions/{execution_id}/status",
    response_model=StatusOut,
    responses=error_responses(401, 404),
)
def get_execution_status(
    execution_id: ExecutionId, actor: CurrentActor, executor: Executor
) -> StatusOut:
    """Where the run is: status, progress 0–100, the node running now."""
    return _status(executor.status(actor, execution_id))


@router.post(
    "/api/v1/executions/{execution_id}/cancel",
    response_model=StatusOut,
    responses=error_responses(401, 404, 409),
)
def cancel_execution(
    execution_id: ExecutionId, actor: CurrentActor, executor: Executor
) -> StatusOut:
    """Stop a pending or running execution; results still in flight are ignored."""
    return _status(executor.cancel(actor, execution_id))


@router.post(
    "/api/v1/executions/{execution_id}/resume",
    response_model=StatusOut,
    responses=error_responses(401, 404, 409),
)
def resume_execution(
    execution_id: ExecutionId, actor: CurrentActor, executor: Executor
) -> StatusOut:
    """Carry a failed execution on from the node that failed; completed nodes are not re-run."""
    return _status(executor.resume(actor, execution_id))
