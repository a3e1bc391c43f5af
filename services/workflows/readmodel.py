"""The list of workflows: a projection of the event store for search, filters and sorting."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.workflows.domain import Workflow
from shared.eventstore import EventSourcedApplication
from shared.readmodel import Projection, contains_text, rewrite_rows, utc

SortField = Literal["name", "created_at", "updated_at"]
SortOrder = Literal["asc", "desc"]


def workflow_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "workflow_list",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        # Case-folded name and description: case-insensitive search that works the same on
        # SQLite (whose lower() is ASCII-only) and PostgreSQL, Chinese text included.
        sa.Column("search_text", sa.Text, nullable=False),
        sa.Column("sort_name", sa.Text, nullable=False, index=True),  # "beta" sorts before "Gamma"
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("nodes", sa.Text, nullable=False),
        sa.Column("edges", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


@dataclass(frozen=True)
class ListQuery:
    owner_id: UUID | None  # None: everyone's (admins)
    skip: int = 0
    limit: int = 100
    search: str | None = None
    status: str | None = None
    sort_by: SortField = "created_at"
    sort_order: SortOrder = "desc"


class WorkflowList:
    # The version of this list's table and of what its rows hold. Bump it when either
    # changes (see `Projection`, docs/upgrades.md): the next start rebuilds it from the events.
    VERSION: ClassVar[int] = 1

    def __init__(
        self, application: EventSourcedApplication, engine: Engine, metadata: sa.MetaData
    ) -> None:
        self._application = application
        self._engine = engine
        self.table = workflow_table(metadata)
        self.projection = Projection(
            "workflow_list",
            application,
            engine,
            metadata,
            self._refresh,
            version=self.VERSION,
            tables=[self.table],
        )

    def _refresh(self, conn: Connection, aggregate_ids: Iterable[UUID]) -> None:
        rewrite_rows(conn, self.table, self._application, aggregate_ids, _row_of)

    def count_owned(self, owner_id: UUID) -> int:
        """How many live workflows `owner_id` owns (their quota), their latest saves included."""
        self.projection.catch_up()
        t = self.table
        statement = sa.select(sa.func.count()).select_from(t).where(t.c.owner_id == str(owner_id))
        with self._engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    def query(self, query: ListQuery) -> list[dict[str, Any]]:
        # Read your writes: whatever this replica (or another) stored is projected first.
        self.projection.catch_up()
        t = self.table
        statement = sa.select(t)
        if query.owner_id is not None:
            statement = statement.where(t.c.owner_id == str(query.owner_id))
        if query.status:
            statement = statement.where(t.c.status == query.status)
        if query.search:
            statement = statement.where(contains_text(t.c.search_text, query.search))
        column = t.c.sort_name if query.sort_by == "name" else t.c[query.sort_by]
        ordering = column.asc() if query.sort_order == "asc" else column.desc()
        statement = statement.order_by(ordering, t.c.id.asc()).offset(query.skip).limit(query.limit)
        with self._engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [_item(row) for row in rows]


def _row_of(aggregate: object) -> dict[str, Any] | None:
    if not isinstance(aggregate, Workflow) or aggregate.deleted:
        return None
    return _row(aggregate)


def _row(workflow: Workflow) -> dict[str, Any]:
    return {
        "id": str(workflow.id),
        "owner_id": str(workflow.owner_id),
        "name": workflow.name,
        "description": workflow.description,
        "search_text": f"{workflow.name}\n{workflow.description}".casefold(),
        "sort_name": workflow.name.casefold(),
        "status": workflow.status,
        "version": workflow.content_version,
        "nodes": json.dumps(workflow.nodes, ensure_ascii=False),
        "edges": json.dumps(workflow.edges, ensure_ascii=False),
        "created_at": workflow.created_on,
        "updated_at": workflow.modified_on,
    }


def _item(row: Any) -> dict[str, Any]:
    return {
        "id": UUID(row["id"]),
        "owner_id": UUID(row["owner_id"]),
        "name": row["name"],
        "description": row["description"],
        "status": row["status"],
        "version": row["version"],
        "nodes": json.loads(row["nodes"]),
        "edges": json.loads(row["edges"]),
        "created_at": utc(row["created_at"]),
        "updated_at": utc(row["updated_at"]),
    }
