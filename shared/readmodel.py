"""Read models: tables projected from a service's event store, for listing, search and sorting.

They live beside the events (a SQLite file of their own, or the service's PostgreSQL schema)
and are rebuilt from the events at will, so nothing in them is ever the only copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.application import AggregateNotFoundError
from sqlalchemy.engine import Connection, Engine

from shared.eventstore import EventSourcedApplication
from shared.settings import ServiceSettings

log = logging.getLogger("agentflow.readmodel")


def read_model_engine(settings: ServiceSettings) -> Engine:
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = settings.data_dir / f"{settings.service_name}-read.sqlite"
        engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _: Any) -> None:
            # WAL lets list queries read while the projector writes.
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        return engine
    url = sa.URL.create(
        "postgresql+psycopg",
        username=settings.postgres_user,
        password=settings.postgres_password.get_secret_value() or None,
        host=settings.postgres_host,
        port=settings.postgres_port,
        database=settings.postgres_dbname,
    )
    return sa.create_engine(url, pool_size=settings.postgres_pool_size, pool_pre_ping=True)


def read_model_metadata(settings: ServiceSettings) -> sa.MetaData:
    """Tables go in the service's own schema on PostgreSQL (created with its event store)."""
    return sa.MetaData(schema=settings.postgres_schema if settings.store == "postgres" else None)


def tracking_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "projection_tracking",
        metadata,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )


def rewrite_rows(
    conn: Connection,
    table: sa.Table,
    application: EventSourcedApplication,
    aggregate_ids: Iterable[UUID],
    row_of: Callable[[object], dict[str, Any] | None],
) -> None:
    """Rewrite each aggregate's row (keyed by `id`) from its current state; `row_of` gives
    None for aggregates that have no row (another kind, or deleted)."""
    for aggregate_id in aggregate_ids:
        conn.execute(table.delete().where(table.c.id == str(aggregate_id)))
        try:
            row = application.repository.read(aggregate_id, row_of)
        except AggregateNotFoundError:
            continue
        if row is not None:
            conn.execute(table.insert().values(**row))


# Applies the current state of the given aggregates to the read model, in one transaction.
Refresh = Callable[[Connection, Iterable[UUID]], None]


class Projection:
    """Keeps read-model tables in step with the notification log.

    Each catch-up reads the notifications after the tracked position, refreshes the rows of the
    aggregates they touch from those aggregates' current state, and stores the new position in
    the same transaction: a crash repeats work but never skips or half-applies it. Because a
    row is always rewritten from the aggregate, applying a notification twice changes nothing.
    """

    def __init__(
        self,
        name: str,
        application: EventSourcedApplication,
        engine: Engine,
        metadata: sa.MetaData,
        refresh: Refresh,
        *,
        batch_size: int = 500,
    ) -> None:
        self.name = name
        self._application = application
        self._engine = engine
        self._metadata = metadata
        self._tracking = tracking_table(metadata)
        self._refresh = refresh
        self._batch_size = batch_size
        self._lock = threading.Lock()
        # The furthest position this process saw applied (by itself or another replica).
        self._seen = 0
        # A SQLite store has one writer, this process: until it saves again there is nothing
        # new, and reads need not ask the store (whose small connection pool they would
        # queue on). Other stores are asked for their last notification id instead.
        self._local_store = application.settings.store == "sqlite"
        self._saved_since = True
        application.add_save_listener(self._saved)

    def create_tables(self) -> None:
        self._metadata.create_all(self._engine, checkfirst=True)

    def position(self) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(self._tracking.c.position).where(self._tracking.c.name == self.name)
            ).scalar()
        return int(value or 0)

    def catch_up(self, *, look: bool = False) -> int:
        """Apply everything stored since the last position; return how many notifications.
        `look`: ask the store even when this process saved nothing (another process may have
        written it: the background runner's poll)."""
        if not look and self._nothing_new():
            return 0
        applied = 0
        with self._lock:
            self._saved_since = False  # a save from now on marks it again
            try:
                while True:
                    count = self._apply_batch()
                    applied += count
                    if count < self._batch_size:
                        return applied
            except BaseException:
                self._saved_since = True  # not applied: the next read tries again
                raise

    def _nothing_new(self) -> bool:
        """The fast path of every read: nothing stored past what is known to be applied, so
        no lock and no transaction (reads would otherwise queue behind one another). While
        another thread is catching up, this waits for it: what it applies may be ours."""
        if self._local_store:
            return not self._saved_since and not self._lock.locked()
        return (self._application.recorder.max_notification_id() or 0) <= self._seen

    def _saved(self) -> None:
        self._saved_since = True

    def rebuild(self) -> int:
        """Forget every row and the position, then project the whole log again."""
        with self._lock, self._engine.begin() as conn:
            self._seen = 0
            self._saved_since = True
            for table in reversed(self._metadata.sorted_tables):
                if table is self._tracking:
                    conn.execute(table.delete().where(table.c.name == self.name))
                else:
                    conn.execute(table.delete())
        return self.catch_up(look=True)

    def _apply_batch(self) -> int:
        with self._engine.begin() as conn:
            query = sa.select(self._tracking.c.position).where(self._tracking.c.name == self.name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # replicas take turns; none applies a stale batch
            row = conn.execute(query).first()
            position = int(row[0]) if row else 0
            notifications = self._application.recorder.select_notifications(
                position, self._batch_size, inclusive_of_start=False
            )
            self._seen = max(self._seen, position)
            if not notifications:
                return 0
            touched = list(dict.fromkeys(UUID(str(n.originator_id)) for n in notifications))
            self._refresh(conn, touched)
            last = notifications[-1].id
            if row is None:
                conn.execute(self._tracking.insert().values(name=self.name, position=last))
            else:
                conn.execute(
                    self._tracking.update()
                    .where(self._tracking.c.name == self.name)
                    .values(position=last)
                )
        self._seen = max(self._seen, last)  # committed
        return len(notifications)


class ProjectionRunner:
    """Keeps a projection caught up in the background: woken by saves, polling as a net."""

    def __init__(
        self, projection: Projection, application: EventSourcedApplication, poll_s: float
    ) -> None:
        self._projection = projection
        self._application = application
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._application.add_save_listener(self._on_save)
        self._task = asyncio.create_task(self._run(), name=f"projection-{self._projection.name}")

    async def stop(self) -> None:
        self._application.remove_save_listener(self._on_save)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_save(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await asyncio.to_thread(self._projection.catch_up, look=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection %s failed; retrying", self._projection.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)


def contains_text(column: sa.ColumnElement[str], term: str) -> sa.ColumnElement[bool]:
    """`column` (a case-folded search text) contains `term`, matched literally: % and _ in
    what people type are characters, not wildcards."""
    escaped = term.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{escaped}%", escape="\\")


def utc(value: datetime) -> datetime:
    """SQLite gives back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
