"""Routes of `/api/v1/workflows` (executing one belongs to the executor). Handlers are sync:
FastAPI runs them in its threadpool, where the synchronous event store belongs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, status
from pydantic import ValidationError as PydanticValidationError

from services.workflows import messages
from services.workflows.application import EXPORT_FORMAT_VERSION, VersionView, WorkflowView
from services.workflows.catalog import TEMPLATES
from services.workflows.content import Content
from services.workflows.deps import CurrentActor, Listing, WorkflowId, Workflows
from services.workflows.readmodel import ListQuery
from services.workflows.schemas import (
    ExportedWorkflow,
    ExportOut,
    ImportIn,
    MessageOut,
    RollbackIn,
    StatusChange,
    TemplateOut,
    ValidationOut,
    VersionDetailOut,
    VersionOut,
    WorkflowCreate,
    WorkflowOut,
    WorkflowUpdate,
    WorkflowValidate,
)
from shared.errors import ValidationFailed
from shared.i18n import Message
from shared.web.deps import NO_NUL, RequestLanguage, Skip
from shared.web.errors import error_responses
from shared.workflow.model import Edge, Node, WorkflowGraph
from shared.workflow.validation import validate_workflow

router = APIRouter(prefix="/api/v1/workflows", tags=["工作流 workflows"])

NOT_FOUND = error_responses(401, 404)
DUPLICATE_ID = Message("{kind} id {id!r} 重复", "Duplicate {kind} id {id!r}")


class ImportMalformed(ValidationFailed):
    default_code = "IMPORT_MALFORMED"
    default_message = messages.IMPORT_MALFORMED


class ImportFutureFormat(ValidationFailed):
    default_code = "IMPORT_UNSUPPORTED_FORMAT"
    default_message = messages.IMPORT_FUTURE_FORMAT


class DuplicateId(ValidationFailed):
    default_code = "DUPLICATE_ID"
    default_message = DUPLICATE_ID


def _items(items: list[Node] | list[Edge], kind: str) -> list[dict[str, Any]]:
    """Stored as sent (unset defaults left out), so export gives back what was drawn."""
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            # Ids are how versions record changes; a duplicate would make them ambiguous.
            raise DuplicateId(kind=kind, id=item.id)
        seen.add(item.id)
    return [item.model_dump(mode="json", exclude_unset=True) for item in items]


def _out(view: WorkflowView) -> WorkflowOut:
    return WorkflowOut.model_validate(view, from_attributes=True)


@router.get("", response_model=list[WorkflowOut], responses=error_responses(401, 422))
def list_workflows(
    actor: CurrentActor,
    listing: Listing,
    skip: Skip = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="每页记录数,最大100")] = 100,
    search: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="按名称或描述搜索")
    ] = None,
    status: Annotated[Literal["draft", "published", "running", "stopped"] | None, Query()] = None,
    sort_by: Annotated[Literal["name", "created_at", "updated_at"], Query()] = "created_at",
    sort_order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> list[dict[str, Any]]:
    """Your workflows (an admin's: everyone's), searched, filtered, sorted and paged."""
    query = ListQuery(
        owner_id=None if actor.is_admin else actor.user_id,
        skip=skip,
        limit=limit,
        search=search or None,
        status=status,
        sort_by=sort_by,
        sort_order=sort_order,
    )
    return listing.query(query)


@router.post(
    "",
    response_model=WorkflowOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 413, 422, 429),
)
def create_workflow(body: WorkflowCreate, actor: CurrentActor, workflows: Workflows) -> WorkflowOut:
    """Create a workflow: version 1, status draft. Invalid drafts may be saved. 429
    QUOTA_EXCEEDED when you already own AGENTFLOW_MAX_WORKFLOWS_PER_USER workflows."""
    content = Content(
        body.name, body.description, _items(body.nodes, "node"), _items(body.edges, "edge")
    )
    return _out(workflows.create(actor, content))


@router.post(
    "/validate",
    response_model=ValidationOut,
    responses=error_responses(401, 422),
    name="validate_workflow",  # the function's own name is the validator's, imported here
)
def validate(body: WorkflowValidate, _: CurrentActor, language: RequestLanguage) -> ValidationOut:
    """Check a graph without saving it: errors block execution, warnings do not."""
    report = validate_workflow(WorkflowGraph(nodes=body.nodes, edges=body.edges), language)
    return ValidationOut.model_validate(report.model_dump())


@router.get("/templates", response_model=list[TemplateOut], responses=error_responses(401))
def list_workflow_templates(_: CurrentActor) -> list[TemplateOut]:
    """Built-in templates to start from."""
    return [TemplateOut.model_validate(t, from_attributes=True) for t in TEMPLATES]


@router.post(
    "/templates/{template_id}/create",
    response_model=WorkflowOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 404, 429),
)
def create_workflow_from_template(
    template_id: str,
    actor: CurrentActor,
    workflows: Workflows,
    name: Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)] = None,
    description: Annotated[str | None, Query(max_length=5000, pattern=NO_NUL)] = None,
) -> WorkflowOut:
    """Create a workflow of your own from a built-in template."""
    return _out(workflows.create_from_template(actor, template_id, name, description))


@router.post(
    "/import",
    response_model=WorkflowOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(401, 413, 422, 429),
)
def import_workflow(body: ImportIn, actor: CurrentActor, workflows: Workflows) -> WorkflowOut:
    """Create a workflow from what `export` produced."""
    version = body.workflow.get("format_version")
    if isinstance(version, int) and version > EXPORT_FORMAT_VERSION:
        raise ImportFutureFormat(version=version, supported=EXPORT_FORMAT_VERSION)
    try:
        exported = ExportedWorkflow.model_validate(body.workflow)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "workflow"
        raise ImportMalformed(
            reason=f"{where}: {first['msg']}",
            extra={"errors": [_field_error(e) for e in exc.errors()]},
        ) from None
    content = Content(
        body.name or exported.name,
        exported.description,
        _items(exported.nodes, "node"),
        _items(exported.edges, "edge"),
    )
    return _out(workflows.import_workflow(actor, content))


@router.get("/{workflow_id}", response_model=WorkflowOut, responses=NOT_FOUND)
def get_workflow(workflow_id: WorkflowId, actor: CurrentActor, workflows: Workflows) -> WorkflowOut:
    """One workflow, as it is now."""
    return _out(workflows.get(actor, workflow_id))


@router.put(
    "/{workflow_id}", response_model=WorkflowOut, responses=error_responses(401, 404, 409, 413, 422)
)
def update_workflow(
    workflow_id: WorkflowId, body: WorkflowUpdate, actor: CurrentActor, workflows: Workflows
) -> WorkflowOut:
    """Change name, description, nodes or edges; a real change makes a new version."""
    view = workflows.update(
        actor,
        workflow_id,
        name=body.name,
        description=body.description,
        nodes=None if body.nodes is None else _items(body.nodes, "node"),
        edges=None if body.edges is None else _items(body.edges, "edge"),
        comment=body.comment,
        expected_version=body.expected_version,
    )
    return _out(view)


@router.delete("/{workflow_id}", response_model=MessageOut, responses=NOT_FOUND)
def delete_workflow(
    workflow_id: WorkflowId, actor: CurrentActor, workflows: Workflows, language: RequestLanguage
) -> MessageOut:
    """Delete a workflow: gone from lists and reads; its history stays for audit."""
    workflows.delete(actor, workflow_id)
    return MessageOut(message=messages.WORKFLOW_DELETED.render(language))


@router.put(
    "/{workflow_id}/status", response_model=WorkflowOut, responses=error_responses(401, 404, 422)
)
def set_workflow_status(
    workflow_id: WorkflowId,
    body: StatusChange,
    actor: CurrentActor,
    workflows: Workflows,
    language: RequestLanguage,
) -> WorkflowOut:
    """Publish (only a valid workflow), stop, or return a workflow to draft."""
    return _out(workflows.set_status(actor, workflow_id, body.status, language))


@router.get("/{workflow_id}/export", response_model=ExportOut, responses=NOT_FOUND)
def export_workflow(
    workflow_id: WorkflowId, actor: CurrentActor, workflows: Workflows
) -> ExportOut:
    """The workflow in the import format, with a format version."""
    return ExportOut(workflow=workflows.export(actor, workflow_id), exported_at=datetime.now(UTC))


@router.get("/{workflow_id}/versions", response_model=list[VersionOut], responses=NOT_FOUND)
def list_workflow_versions(
    workflow_id: WorkflowId, actor: CurrentActor, workflows: Workflows
) -> list[VersionOut]:
    """Every version, oldest first: when, who, why, and what changed."""
    return [_version_out(v) for v in workflows.versions(actor, workflow_id)]


@router.get(
    "/{workflow_id}/versions/{version}", response_model=VersionDetailOut, responses=NOT_FOUND
)
def get_workflow_version(
    workflow_id: WorkflowId,
    version: Annotated[int, Path(ge=1)],
    actor: CurrentActor,
    workflows: Workflows,
) -> VersionDetailOut:
    """The full content of one version, as it was."""
    record, content = workflows.version(actor, workflow_id, version)
    return VersionDetailOut(**_version_out(record).model_dump(), **content.as_dict())


@router.post(
    "/{workflow_id}/versions/{version}/rollback",
    response_model=WorkflowOut,
    responses=NOT_FOUND,
)
def rollback_workflow(
    workflow_id: WorkflowId,
    version: Annotated[int, Path(ge=1)],
    actor: CurrentActor,
    workflows: Workflows,
    body: RollbackIn | None = None,
) -> WorkflowOut:
    """Append a new version whose content equals `version`; history is kept."""
    comment = body.comment if body else ""
    return _out(workflows.rollback(actor, workflow_id, version, comment))


def _version_out(record: VersionView) -> VersionOut:
    return VersionOut.model_validate(record, from_attributes=True)


def _field_error(error: Any) -> dict[str, Any]:
    return {"loc": list(error["loc"]), "msg": str(error["msg"]), "type": str(error["type"])}
