"""Routes of `/api/v1/executions` and `POST /api/v1/workflows/{id}/execute`."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any
from uuid import UUID

import httpx
from fastapi import APIRouter, Body, Depends, Query, Request, status

from services.executor import messages
from services.executor.application import ExecutionNotFound, ExecutorApplication
from services.executor.domain import Execution
from services.executor.limits import ExecutionLimits
from services.executor.orchestrator import Orchestrator
from services.executor.readmodel import ExecutionList, ExecutionQuery
from services.executor.schemas import (
    ExecuteIn,
    ExecutionCreate,
    ExecutionCreated,
    ExecutionListItem,
    ExecutionOut,
    Status,
    StatusOut,
)
from shared.errors import (
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    ValidationFailed,
)
from shared.i18n import Message
from shared.security.deps import CurrentPrincipal
from shared.web.deps import NO_NUL, RequestLanguage, Skip
from shared.web.errors import error_responses
from shared.workflow.model import WorkflowGraph
from shared.workflow.validation import validate_workflow

router = APIRouter(tags=["执行 executions"])


class WorkflowNotFound(NotFound):
    default_code = "WORKFLOW_NOT_FOUND"
    default_message = messages.WORKFLOW_NOT_FOUND


class WorkflowInvalid(ValidationFailed):
    default_code = "INVALID_WORKFLOW"
    default_message = messages.WORKFLOW_INVALID


class InputTooLarge(PayloadTooLarge):
    default_code = "INPUT_TOO_LARGE"
    default_message = Message(
        "input_data 过大:{size} 字节(最多 {limit})",
        "input_data is too large: {size} bytes (at most {limit})",
    )


# input_data is stored in the run's first event, beside the workflow (at most 3 MiB), and is
# handed to every worker node with its inputs (a NATS message holds at most 1 MB): far more
# than a run's input needs, and a bound on what one start may store.
MAX_INPUT_BYTES = 1024 * 1024


class WorkflowsUnavailable(ServiceUnavailable):
    default_code = "UPSTREAM_UNAVAILABLE"
    default_message = messages.WORKFLOWS_DOWN


def _app(request: Request) -> ExecutorApplication:
    app = request.app.state.executor
    assert isinstance(app, ExecutorApplication)
    return app


def _orchestrator(request: Request) -> Orchestrator:
    orchestrator = request.app.state.orchestrator
    assert isinstance(orchestrator, Orchestrator)
    return orchestrator


Executor = Annotated[ExecutorApplication, Depends(_app)]
Orchestration = Annotated[Orchestrator, Depends(_orchestrator)]


def _execution_id(execution_id: str) -> UUID:
    try:
        return UUID(execution_id)
    except ValueError:
        raise ExecutionNotFound from None


ExecutionId = Annotated[UUID, Depends(_execution_id)]


async def _fetch_workflow(request: Request, workflow_id: UUID) -> dict[str, Any]:
    """The workflow as the caller may see it now (their token: another user's is 404)."""
    http: httpx.AsyncClient = request.app.state.http
    url = f"{request.app.state.settings.workflows_url}/api/v1/workflows/{workflow_id}"
    headers = {"authorization": request.headers.get("authorization", "")}
    try:
        response = await http.get(url, headers=headers)
    except httpx.HTTPError:
        raise WorkflowsUnavailable from None
    if response.status_code == 404:
        raise WorkflowNotFound
    if response.status_code != 200:
        raise WorkflowsUnavailable
    workflow: dict[str, Any] = response.json()
    return workflow


async def _start(
    request: Request,
    workflow_id: UUID,
    input_data: dict[str, Any],
    principal: CurrentPrincipal,
    executor: ExecutorApplication,
    orchestrator: Orchestrator,
    language: RequestLanguage,
) -> ExecutionCreated:
    size = len(json.dumps(input_data, ensure_ascii=False).encode())
    if size > MAX_INPUT_BYTES:
        raise InputTooLarge(size=size, limit=MAX_INPUT_BYTES)
    workflow = await _fetch_workflow(request, workflow_id)
    graph = WorkflowGraph.model_validate({"nodes": workflow["nodes"], "edges": workflow["edges"]})
    # Off the event loop: a large hostile graph takes a second to check, and the loop also
    # dispatches every other user's nodes.
    report = await asyncio.to_thread(validate_workflow, graph, language)
    if not report.valid:
        raise WorkflowInvalid(
            summary="; ".join(issue.message for issue in report.errors[:3]),
            extra={"errors": [issue.model_dump() for issue in report.errors]},
        )
    limits: ExecutionLimits = request.app.state.limits

    def create() -> Execution:
        with limits.lock(principal.user_id):
            limits.check(principal.user_id)
            return executor.create(principal.user_id, workflow, input_data)

    execution = await asyncio.to_thread(create)
    orchestrator.kick(execution.id)
    return ExecutionCreated(
        id=execution.id, workflow_id=workflow_id, status="pending", task_id=str(execution.id)
    )


STARTS = error_responses(401, 404, 413, 422, 429, 503)


@router.post(
    "/api/v1/workflows/{workflow_id}/execute",
    response_model=ExecutionCreated,
    status_code=status.HTTP_201_CREATED,
    responses=STARTS,
)
async def execute_workflow(
    workflow_id: UUID,
    request: Request,
    principal: CurrentPrincipal,
    executor: Executor,
    orchestrator: Orchestration,
    language: RequestLanguage,
    body: Annotated[ExecuteIn | None, Body()] = None,
) -> ExecutionCreated:
    """Run the workflow's current version; answers at once, the run goes on in the background."""
    input_data = body.input_data if body is not None else {}
    return await _start(
        request, workflow_id, input_data, principal, executor, orchestrator, language
    )


@router.post(
    "/api/v1/executions",
    response_model=ExecutionCreated,
    status_code=status.HTTP_201_CREATED,
    responses=STARTS,
)
async def create_execution(
    body: ExecutionCreate,
    request: Request,
    principal: CurrentPrincipal,
    executor: Executor,
    orchestrator: Orchestration,
    language: RequestLanguage,
) -> ExecutionCreated:
    """Create an execution of a workflow (the same as `POST /workflows/{id}/execute`)."""
    return await _start(
        request, body.workflow_id, body.input_data, principal, executor, orchestrator, language
    )


def _status(execution: Execution) -> StatusOut:
    return StatusOut(
        status=execution.status, progress=execution.progress, current_node=execution.current_node
    )


def visible(executor: ExecutorApplication, execution_id: UUID, principal: Any) -> Execution:
    return executor.get(execution_id, None if principal.is_admin else principal.user_id)


def _executions(request: Request) -> ExecutionList:
    listing = request.app.state.executions
    assert isinstance(listing, ExecutionList)
    return listing


@router.get(
    "/api/v1/executions",
    response_model=list[ExecutionListItem],
    responses=error_responses(401, 422),
)
def list_executions(
    principal: CurrentPrincipal,
    listing: Annotated[ExecutionList, Depends(_executions)],
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
        owner_id=None if principal.is_admin else principal.user_id,
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
    execution_id: ExecutionId, principal: CurrentPrincipal, executor: Executor
) -> ExecutionOut:
    """The full record: input, output, error, and every node's inputs, output and attempts."""
    execution = visible(executor, execution_id, principal)
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
    execution_id: ExecutionId, principal: CurrentPrincipal, executor: Executor
) -> StatusOut:
    """Where the run is: status, progress 0–100, the node running now."""
    execution = visible(executor, execution_id, principal)
    return _status(execution)


class ExecutionFinished(Conflict):
    default_code = "EXECUTION_FINISHED"
    default_message = messages.EXECUTION_FINISHED


@router.post(
    "/api/v1/executions/{execution_id}/cancel",
    response_model=StatusOut,
    responses=error_responses(401, 404, 409),
)
def cancel_execution(
    execution_id: ExecutionId, principal: CurrentPrincipal, executor: Executor
) -> StatusOut:
    """Stop a pending or running execution; results still in flight are ignored."""
    visible(executor, execution_id, principal)
    by = principal.username or str(principal.user_id)

    def cancel(execution: Execution) -> bool:
        if not execution.cancel(by):
            raise ExecutionFinished(status=execution.status)
        execution.record_log("warn", f"执行已被 {by} 取消")
        return True

    execution = executor.change(execution_id, cancel)
    return _status(execution)


class NotResumable(Conflict):
    default_code = "EXECUTION_NOT_RESUMABLE"
    default_message = messages.NOT_RESUMABLE


@router.post(
    "/api/v1/executions/{execution_id}/resume",
    response_model=StatusOut,
    responses=error_responses(401, 404, 409),
)
def resume_execution(
    execution_id: ExecutionId,
    principal: CurrentPrincipal,
    executor: Executor,
    orchestrator: Orchestration,
) -> StatusOut:
    """Carry a failed execution on from the node that failed; completed nodes are not re-run."""
    visible(executor, execution_id, principal)
    by = principal.username or str(principal.user_id)

    def resume(execution: Execution) -> bool:
        if not execution.resume(by):
            raise NotResumable(status=execution.status)
        execution.record_log("info", f"执行已被 {by} 从失败处恢复")
        return True

    execution = executor.change(execution_id, resume)
    orchestrator.kick_from_thread(execution_id)
    return _status(execution)
