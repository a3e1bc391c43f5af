"""The workflows service's commands and queries. Takes and returns ids and plain data."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from services.workflows import messages
from services.workflows.catalog import find_template
from services.workflows.content import Content, diff, summarize
from services.workflows.domain import USER_STATUSES, VERSION_EVENTS, Workflow
from services.workflows.settings import WorkflowsSettings
from shared.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from shared.eventstore import EventSourcedApplication
from shared.i18n import Language
from shared.workflow.model import WorkflowGraph
from shared.workflow.validation import validate_workflow

EXPORT_FORMAT_VERSION = 1


class TemplateNotFound(NotFound):
    default_code = "TEMPLATE_NOT_FOUND"
    default_message = messages.TEMPLATE_NOT_FOUND


class WorkflowNotFound(NotFound):
    default_code = "WORKFLOW_NOT_FOUND"
    default_message = messages.WORKFLOW_NOT_FOUND


class VersionNotFound(NotFound):
    default_code = "VERSION_NOT_FOUND"
    default_message = messages.VERSION_NOT_FOUND


class VersionConflict(Conflict):
    default_code = "VERSION_CONFLICT"
    default_message = messages.VERSION_CONFLICT


class StatusNotAllowed(ValidationFailed):
    default_code = "STATUS_NOT_ALLOWED"
    default_message = messages.STATUS_NOT_ALLOWED


class InvalidWorkflow(ValidationFailed):
    default_code = "INVALID_WORKFLOW"
    default_message = messages.CANNOT_PUBLISH_INVALID


class TooManyWorkflows(QuotaExceeded):
    default_message = messages.TOO_MANY_WORKFLOWS


OwnedCount = Callable[[UUID], int]
_CREATE_STRIPES = 64


@dataclass(frozen=True)
class Actor:
    """Who asks: their id, display name, and whether they may see everyone's workflows."""

    user_id: UUID
    username: str = ""
    is_admin: bool = False

    def as_author(self) -> dict[str, str]:
        return {"id": str(self.user_id), "username": self.username}


@dataclass(frozen=True)
class WorkflowView:
    id: UUID
    owner_id: UUID
    name: str
    description: str
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    version: int
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class VersionView:
    version: int
    created_at: datetime
    author: dict[str, str]
    comment: str
    summary: str
    kind: str  # created | updated | rolled_back
    rolled_back_to: int | None
    aggregate_version: int


class WorkflowsApplication(EventSourcedApplication):
    def __init__(self, settings: WorkflowsSettings, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self._max_per_user = settings.max_workflows_per_user
        self._count_owned: OwnedCount | None = None
        # One user's creates are counted and saved one at a time (in this process), so
        # parallel requests cannot all pass the count; other users' creates do not wait.
        self._creating = [threading.Lock() for _ in range(_CREATE_STRIPES)]

    def count_owned_with(self, count_owned: OwnedCount) -> None:
        """Where the per-user quota counts a user's workflows (the list read model, which is
        built from this application, hence set after it)."""
        self._count_owned = count_owned

    # -- commands ----------------------------------------------------------------------------

    def create(
        self, actor: Actor, content: Content, *, origin: str = "api", comment: str = ""
    ) -> WorkflowView:
        content.check_size()
        workflow = Workflow(actor.user_id, content.as_dict(), actor.as_author(), origin, comment)
        with self._creating[actor.user_id.int % _CREATE_STRIPES]:
            if (
                self._count_owned is not None
                and self._count_owned(actor.user_id) >= self._max_per_user
            ):
                raise TooManyWorkflows(limit=self._max_per_user)
            self.save(workflow)
        return self._view(workflow)

    def update(
        self,
        actor: Actor,
        workflow_id: UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        nodes: list[dict[str, Any]] | None = None,
        edges: list[dict[str, Any]] | None = None,
        comment: str = "",
        expected_version: int | None = None,
    ) -> WorkflowView:
        def change() -> WorkflowView:
            workflow = self._load(actor, workflow_id)
            if expected_version is not None and expected_version != workflow.content_version:
                raise VersionConflict(current=workflow.content_version)
            current = workflow.content
            wanted = Content(
                name=current.name if name is None else name,
                description=current.description if description is None else description,
                nodes=current.nodes if nodes is None else nodes,
                edges=current.edges if edges is None else edges,
            )
            wanted.check_size()
            changes = diff(current, wanted)
            if not changes:
                return self._view(workflow)  # a no-op update makes no version
            summary = summarize(current, changes)
            workflow.change_content(changes, actor.as_author(), comment, summary)
            self.save(workflow)
            return self._view(workflow)

        # A concurrent writer's version stays in history; ours is applied on top of it.
        return self.retry_on_conflict(change)

    def delete(self, actor: Actor, workflow_id: UUID) -> None:
        def remove() -> None:
            workflow = self._load(actor, workflow_id)
            workflow.delete(actor.as_author())
            self.save(workflow)

        self.retry_on_conflict(remove)

    def set_status(
        self, actor: Actor, workflow_id: UUID, status: str, language: Language = "zh"
    ) -> WorkflowView:
        if status not in USER_STATUSES:
            raise StatusNotAllowed(status=status)

        def change() -> WorkflowView:
            workflow = self._load(actor, workflow_id)
            if status == "published":
                self.check_runnable(workflow, language)
            workflow.change_status(status, actor.as_author())
            self.save(workflow)
            return self._view(workflow)

        return self.retry_on_conflict(change)

    def rollback(
        self, actor: Actor, workflow_id: UUID, version: int, comment: str = ""
    ) -> WorkflowView:
        def roll_back() -> WorkflowView:
            workflow = self._load(actor, workflow_id)
            target = self._content_at(workflow, version)
            current = workflow.content
            changes = diff(current, target)
            summary = f"rolled back to v{version}: {summarize(current, changes)}"
            workflow.roll_back(version, changes, actor.as_author(), comment, summary)
            self.save(workflow)
            return self._view(workflow)

        return self.retry_on_conflict(roll_back)

    def import_workflow(self, actor: Actor, content: Content, comment: str = "") -> WorkflowView:
        return self.create(actor, content, origin="import", comment=comment)

    def create_from_template(
        self, actor: Actor, template_id: str, name: str | None, description: str | None
    ) -> WorkflowView:
        template = find_template(template_id)
        if template is None:
            raise TemplateNotFound
        content = Content(
            name=name or template.name,
            description=template.description if description is None else description,
            nodes=copy.deepcopy(template.nodes),
            edges=copy.deepcopy(template.edges),
        )
        return self.create(actor, content, origin=f"template:{template_id}")

    # -- queries -----------------------------------------------------------------------------

    def export(self, actor: Actor, workflow_id: UUID) -> dict[str, Any]:
        """The workflow as `import_workflow` takes it back (format version 1)."""
        view = self.get(actor, workflow_id)
        return {
            "format_version": EXPORT_FORMAT_VERSION,
            "id": str(view.id),
            "name": view.name,
            "description": view.description,
            "nodes": view.nodes,
            "edges": view.edges,
            "created_at": view.created_at.isoformat(),
            "updated_at": view.updated_at.isoformat(),
        }

    def get(self, actor: Actor, workflow_id: UUID) -> WorkflowView:
        return self._view(self._load(actor, workflow_id))

    def versions(self, actor: Actor, workflow_id: UUID) -> list[VersionView]:
        self._load(actor, workflow_id)
        return self._version_history(workflow_id)

    def version(self, actor: Actor, workflow_id: UUID, version: int) -> tuple[VersionView, Content]:
        workflow = self._load(actor, workflow_id)
        record = self._version_record(workflow_id, version)
        return record, self._content_at(workflow, version)

    def check_runnable(self, workflow: Workflow, language: Language) -> None:
        graph = WorkflowGraph.model_validate({"nodes": workflow.nodes, "edges": workflow.edges})
        report = validate_workflow(graph, language)
        if not report.valid:
            summary = "; ".join(issue.message for issue in report.errors[:3])
            raise InvalidWorkflow(
                summary=summary,
                extra={"errors": [issue.model_dump() for issue in report.errors]},
            )

    # -- helpers -----------------------------------------------------------------------------

    def _load(self, actor: Actor, workflow_id: UUID) -> Workflow:
        try:
            workflow: object = self.repository.get(workflow_id)
        except AggregateNotFoundError:
            raise WorkflowNotFound from None
        if not isinstance(workflow, Workflow) or workflow.deleted:
            raise WorkflowNotFound
        if workflow.owner_id != actor.user_id and not actor.is_admin:
            raise WorkflowNotFound  # another user's workflow does not exist, as far as they know
        return workflow

    def _version_history(self, workflow_id: UUID) -> list[VersionView]:
        history: list[VersionView] = []
        for domain_event in self.events.get(workflow_id):
            kind = type(domain_event).__qualname__
            if kind not in VERSION_EVENTS:
                continue
            data: Any = domain_event
            history.append(
                VersionView(
                    version=len(history) + 1,
                    created_at=data.timestamp,
                    author=dict(data.author),
                    comment=data.comment,
                    summary=_summary_of(kind, data),
                    kind={
                        "Workflow.Created": "created",
                        "Workflow.ContentChanged": "updated",
                        "Workflow.RolledBack": "rolled_back",
                    }[kind],
                    rolled_back_to=getattr(data, "to_version", None),
                    aggregate_version=data.originator_version,
                )
            )
        return history

    def _version_record(self, workflow_id: UUID, version: int) -> VersionView:
        history = self._version_history(workflow_id)
        if not 1 <= version <= len(history):
            raise VersionNotFound(version=version)
        return history[version - 1]

    def _content_at(self, workflow: Workflow, version: int) -> Content:
        if version == workflow.content_version:
            return workflow.content
        record = self._version_record(workflow.id, version)
        past: Workflow = self.repository.get(workflow.id, version=record.aggregate_version)
        return past.content

    @staticmethod
    def _view(workflow: Workflow) -> WorkflowView:
        return WorkflowView(
            id=workflow.id,
            owner_id=workflow.owner_id,
            name=workflow.name,
            description=workflow.description,
            nodes=workflow.nodes,
            edges=workflow.edges,
            version=workflow.content_version,
            status=workflow.status,
            created_at=workflow.created_on,
            updated_at=workflow.modified_on,
        )


def _summary_of(kind: str, data: Any) -> str:
    if kind == "Workflow.Created":
        origin = str(data.origin)
        return "created" if origin == "api" else f"created from {origin}"
    return str(data.summary)
