"""The list of executions: a projection for filters, search and recovery after a restart."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.executor.domain import FINAL_STATUSES, Execution
from shared.eventstore import EventSourcedApplication
from shared.readmodel import Projection, contains_text, rewrite_rows, utc


def execution_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "execution_list",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), nullable=False, index=True),
        sa.Column("workflow_id", sa.String(36), nullable=False, index=True),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("workflow_name", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("input_data", sa.Text, nullable=False),
        sa.Column("output_data", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("execution_time", sa.Integer, nullable=True),
        sa.Column("search_text", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True)
class ExecutionQuery:
    owner_id: UUID | None
    skip: int = 0
    limit: int = 100
    workflow_id: UUID | None = None
    status: str | None = None
    search: str | None = None


class ExecutionList:
    # The version of this list's table and of what its rows hold. Bump it when either
    # changes (see `Projection`, docs/upgrades.md): the next start rebuilds it from the events.
    VERSION: ClassVar[int] = 1

    def __init__(
        self, application: EventSourcedApplication, engine: Engine, metadata: sa.MetaData
    ) -> None:
        self._application = application
        self._engine = engine
        self.table = execution_table(metadata)
        self.projection = Projection(
            "execution_list",
            application,
            engine,
            metadata,
            self._refresh,
            version=self.VERSION,
            tables=[self.table],
            batch_size=1000,
        )

    def _refresh(self, conn: Connection, aggregate_ids: Iterable[UUID]) -> None:
        rewrite_rows(conn, self.table, self._application, aggregate_ids, _row_of)

    def query(self, query: ExecutionQuery) -> list[dict[str, Any]]:
        self.projection.catch_up()  # read your writes
        t = self.table
        statement = sa.select(t)
        if query.owner_id is not None:
            statement = statement.where(t.c.owner_id == str(query.owner_id))
        if query.workflow_id is not None:
            statement = statement.where(t.c.workflow_id == str(query.workflow_id))
        if query.status:
            statement = statement.where(t.c.status == query.status)
        if query.search:
            statement = statement.where(contains_text(t.c.search_text, query.search))
        statement = (
            statement.order_by(t.c.created_at.desc(), t.c.id.asc())
            .offset(query.skip)
            .limit(query.limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [_item(row) for row in rows]

    def activity(self, owner_id: UUID, since: datetime) -> tuple[int, int]:
        """An owner's unfinished executions, and how many they started since `since`."""
        self.projection.catch_up()  # the run started a moment ago counts
        t = self.table
        mine = t.c.owner_id == str(owner_id)
        count = sa.select(sa.func.count()).select_from(t)
        with self._engine.connect() as conn:
            unfinished = conn.execute(
                count.where(mine, t.c.status.not_in(sorted(FINAL_STATUSES)))
            ).scalar()
            recent = conn.execute(count.where(mine, t.c.created_at >= since)).scalar()
        return int(unfinished or 0), int(recent or 0)

    def unfinished(self, created_before: datetime | None = None) -> list[UUID]:
        """Executions still going (created before `created_before`, when given): the ones to
        carry on after a restart, or to fail for running too long."""
        self.projection.catch_up()
        t = self.table
        query = sa.select(t.c.id).where(t.c.status.not_in(sorted(FINAL_STATUSES)))
        if created_before is not None:
            query = query.where(t.c.created_at < created_before)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [UUID(row[0]) for row in rows]

    def pending(self, created_before: datetime) -> list[UUID]:
        """Executions recorded but not started, created before `created_before`: a start
        whose hand-off to its partition's owner was lost with the replica that took it."""
        self.projection.catch_up()
        t = self.table
        query = sa.select(t.c.id).where(t.c.status == "pending", t.c.created_at < created_before)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [UUID(row[0]) for row in rows]


def _row_of(aggregate: object) -> dict[str, Any] | None:
    return _row(aggregate) if isinstance(aggregate, Execution) else None


def _row(execution: Execution) -> dict[str, Any]:
    input_json = json.dumps(execution.input_data, ensure_ascii=False)
    output_json = (
        None
        if execution.output_data is None
        else json.dumps(execution.output_data, ensure_ascii=False)
    )
    error_json = (
        None if execution.error is None else json.dumps(execution.error, ensure_ascii=False)
    )
    searchable = "\n".join(
        part
        for part in (
            str(execution.id),
            execution.workflow_name,
            input_json,
            output_json,
            error_json,
        )
        if part
    )
    return {
        "id": str(execution.id),
        "owner_id": str(execution.owner_id),
        "workflow_id": str(execution.workflow_id),
        "workflow_version": execution.workflow_version,
        "workflow_name": execution.workflow_name,
        "status": execution.status,
        "input_data": input_json,
        "output_data": output_json,
        "error": error_json,
        "execution_time": execution.execution_time_ms,
        "search_text": searchable.casefold(),
        "created_at": execution.created_on,
        "updated_at": execution.modified_on,
    }


def _item(row: Any) -> dict[str, Any]:
    return {
        "id": UUID(row["id"]),
        "workflow_id": UUID(row["workflow_id"]),
        "workflow_version": row["workflow_version"],
        "workflow_name": row["workflow_name"],
        "status": row["status"],
        "input_data": json.loads(row["input_data"]),
        "output_data": None if row["output_data"] is None else json.loads(row["output_data"]),
        "error": None if row["error"] is None else json.loads(row["error"]),
        "execution_time": row["execution_time"],
        "created_at": utc(row["created_at"]),
        "updated_at": utc(row["updated_at"]),
    }
