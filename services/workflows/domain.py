"""The `Workflow` aggregate. Every content change is an event and makes version n+1; a
version's content is the state after its event; rollback appends, history is never rewritten."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from services.workflows.content import Content, apply

Status = Literal["draft", "published", "running", "stopped"]
STATUSES: tuple[Status, ...] = ("draft", "published", "running", "stopped")
# `running` is the executor's to set; people move a workflow between these.
USER_STATUSES: tuple[Status, ...] = ("draft", "published", "stopped")

# Event names whose events make a new content version, in the order they may appear.
VERSION_EVENTS = ("Workflow.Created", "Workflow.ContentChanged", "Workflow.RolledBack")


class WorkflowDeletedError(Exception):
    pass


class InvalidStatusError(ValueError):
    pass


class Workflow(Aggregate):
    @event("Created")
    def __init__(
        self,
        owner_id: UUID,
        content: dict[str, Any],
        author: dict[str, str],
        origin: str,
        comment: str,
    ) -> None:
        self.owner_id = owner_id
        self._set_content(Content(**content))
        self.status: Status = "draft"
        self.content_version = 1
        self.deleted = False

    @event("ContentChanged")
    def change_content(
        self, changes: dict[str, Any], author: dict[str, str], comment: str, summary: str
    ) -> None:
        self.check_not_deleted()
        self._set_content(apply(self.content, changes))
        self.content_version += 1

    @event("RolledBack")
    def roll_back(
        self,
        to_version: int,
        changes: dict[str, Any],
        author: dict[str, str],
        comment: str,
        summary: str,
    ) -> None:
        self.check_not_deleted()
        self._set_content(apply(self.content, changes))
        self.content_version += 1

    def change_status(self, status: str, author: dict[str, str]) -> None:
        self.check_not_deleted()
        if status not in STATUSES:
            raise InvalidStatusError(status)
        if status != self.status:
            self._status_changed(status, author)

    @event("StatusChanged")
    def _status_changed(self, status: Status, author: dict[str, str]) -> None:
        self.status = status

    @event("Deleted")
    def delete(self, author: dict[str, str]) -> None:
        self.check_not_deleted()
        self.deleted = True

    # -- invariants and views ----------------------------------------------------------------

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise WorkflowDeletedError(str(self.id))

    @property
    def content(self) -> Content:
        return Content(self.name, self.description, self.nodes, self.edges)

    def _set_content(self, content: Content) -> None:
        self.name = content.name
        self.description = content.description
        self.nodes = content.nodes
        self.edges = content.edges
