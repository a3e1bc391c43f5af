"""The list of data sources: a projection of the event store, filtered by type and status.

Rows hold what a list shows, never a secret: the config is stored masked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.datasources.application import DataSourcesApplication
from services.datasources.domain import DataSource
from shared.readmodel import Projection, rewrite_rows, utc


def data_source_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "data_source_list",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), nullable=False, index=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("type", sa.String(16), nullable=False, index=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("config", sa.Text, nullable=False),  # masked
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("last_test", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


@dataclass(frozen=True)
class ListQuery:
    owner_id: UUID | None  # None: everyone's (admins)
    skip: int = 0
    limit: int = 100
    source_type: str | None = None
    status: str | None = None


class DataSourceList:
    # The version of this list's table and of what its rows hold. Bump it when either
    # changes (see `Projection`, docs/upgrades.md): the next start rebuilds it from the events.
    VERSION: ClassVar[int] = 1

    def __init__(
        self, application: DataSourcesApplication, engine: Engine, metadata: sa.MetaData
    ) -> None:
        self._application = application
        self._engine = engine
        self.table = data_source_table(metadata)
        self.projection = Projection(
            "data_source_list",
            application,
            engine,
            metadata,
            self._refresh,
            version=self.VERSION,
            tables=[self.table],
        )

    def _refresh(self, conn: Connection, aggregate_ids: Iterable[UUID]) -> None:
        rewrite_rows(conn, self.table, self._application, aggregate_ids, _row_of)

    def query(self, query: ListQuery) -> list[dict[str, Any]]:
        self.projection.catch_up()  # read your writes
        t = self.table
        statement = sa.select(t)
        if query.owner_id is not None:
            statement = statement.where(t.c.owner_id == str(query.owner_id))
        if query.source_type:
            statement = statement.where(t.c.type == query.source_type)
        if query.status:
            statement = statement.where(t.c.status == query.status)
        statement = (
            statement.order_by(t.c.created_at.desc(), t.c.id.asc())
            .offset(query.skip)
            .limit(query.limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(statement).mappings().all()
        return [
            {
                "id": UUID(row["id"]),
                "owner_id": UUID(row["owner_id"]),
                "name": row["name"],
                "type": row["type"],
                "description": row["description"],
                "config": json.loads(row["config"]),
                "status": row["status"],
                "last_test": json.loads(row["last_test"]) if row["last_test"] else None,
                "created_at": utc(row["created_at"]),
                "updated_at": utc(row["updated_at"]),
            }
            for row in rows
        ]

    def count_owned(self, owner_id: UUID) -> int:
        """How many live data sources `owner_id` has (read your writes)."""
        self.projection.catch_up()
        t = self.table
        statement = sa.select(sa.func.count()).where(t.c.owner_id == str(owner_id))
        with self._engine.connect() as conn:
            return int(conn.execute(statement).scalar_one())

    def all_ids(self) -> list[UUID]:
        self.projection.catch_up()
        with self._engine.connect() as conn:
            return [UUID(i) for i in conn.execute(sa.select(self.table.c.id)).scalars()]


def _row_of(aggregate: object) -> dict[str, Any] | None:
    if not isinstance(aggregate, DataSource) or aggregate.deleted:
        return None
    view = DataSourcesApplication.view_of(aggregate)
    return {
        "id": str(view.id),
        "owner_id": str(view.owner_id),
        "name": view.name,
        "type": view.type,
        "description": view.description,
        "config": json.dumps(view.config, ensure_ascii=False),
        "status": view.status,
        "last_test": json.dumps(view.last_test, ensure_ascii=False) if view.last_test else None,
        "created_at": view.created_at,
        "updated_at": view.updated_at,
    }
