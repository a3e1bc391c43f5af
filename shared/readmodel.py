"""Read models: tables projected from a service's event store, for listing, search and sorting.

They live beside the events (a SQLite file of their own, or the service's PostgreSQL schema)
and are rebuilt from the events at will, so nothing in them is ever the only copy. That is
also how they are upgraded: a projection declares a version, and a start that finds rows of
another version drops its tables and projects them again (docs/upgrades.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Notification
from sqlalchemy.engine import Connection, Engine

from shared.eventstore import EventSourcedApplication, mutate_all
from shared.settings import ServiceSettings

log = logging.getLogger("agentflow.readmodel")


def read_model_engine(settings: ServiceSettings) -> Engine:
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        path = settings.data_dir / f"{settings.service_name}-read.sqlite"
        engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _: Any) -> None:
            # WAL lets list queries read while the projector writes. NORMAL: no fsync per
            # commit (one per checkpoint); a power cut may undo the last batches, and since
            # the position is committed with the rows, the next catch-up applies them again.
            # Switching a new file to WAL takes a lock that SQLite's busy timeout does not
            # wait for: two processes opening it at once can see "database is locked".
            for attempt in range(50):
                try:
                    dbapi_connection.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError:
                    if attempt == 49:
                        raise
                    time.sleep(0.02)
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

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


TRACKING_TABLE = "projection_tracking"


def tracking_table(metadata: sa.MetaData) -> sa.Table:
    """Each projection's position in the notification log, and the version of the projection
    that wrote its rows (one table for every projection of a service)."""
    key = f"{metadata.schema}.{TRACKING_TABLE}" if metadata.schema else TRACKING_TABLE
    if key in metadata.tables:
        return metadata.tables[key]
    return sa.Table(
        TRACKING_TABLE,
        metadata,
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        # Rows tracked before versions were recorded were written by version 1: the shapes
        # of that time are version 1 of each projection.
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )


class Touched(list[UUID]):
    """The aggregates a batch of notifications touched, in the order of their first event
    there, and the state of those the batch could build from its own events (`built`: as of
    the aggregate's last event in the batch). The others are read from the store."""

    def __init__(self, ids: Iterable[UUID], built: dict[UUID, object]) -> None:
        super().__init__(ids)
        self.built = built


def rewrite_rows(
    conn: Connection,
    table: sa.Table,
    application: EventSourcedApplication,
    aggregate_ids: Iterable[UUID],
    row_of: Callable[[object], dict[str, Any] | None],
) -> None:
    """Rewrite each aggregate's row (keyed by `id`) from its state: the one its batch built
    (when `aggregate_ids` is a projection's `Touched`), else its current state in the store;
    `row_of` gives None for aggregates that have no row (another kind, or deleted). The rows
    go in bulk: one DELETE per chunk of ids, one executemany INSERT per shape of row."""
    built = aggregate_ids.built if isinstance(aggregate_ids, Touched) else {}
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    for aggregate_id in aggregate_ids:
        ids.append(str(aggregate_id))
        if aggregate_id in built:
            aggregate = built[aggregate_id]
            row = None if aggregate is None else row_of(aggregate)
        else:
            try:
                row = application.repository.read(aggregate_id, row_of)
            except AggregateNotFoundError:
                continue
        if row is not None:
            rows.append(row)
    for start in range(0, len(ids), _CHUNK):
        conn.execute(table.delete().where(table.c.id.in_(ids[start : start + _CHUNK])))
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(row), []).append(row)
    for same in shapes.values():
        conn.execute(table.insert(), same)


# Ids per DELETE: well under SQLite's limit of bound parameters (32,766), one statement
# for a whole batch of most projections.
_CHUNK = 1000


def build_aggregates(
    application: EventSourcedApplication,
    notifications: Sequence[Notification],
    carried: dict[UUID, object],
) -> Touched:
    """The aggregates `notifications` touch, each built from the batch's own events when it
    began there (its version 1 is in the batch) or continues one of `carried` (built by the
    previous batch, up to the version before its first event here): each event is decoded
    and applied once, instead of the aggregate being read again from the store. An aggregate
    the batch cannot build (it began before, or an event does not apply) is left out of
    `built`, and its row comes from its current state, read from the store."""
    events: dict[UUID, list[Notification]] = {}
    for notification in notifications:
        originator = notification.originator_id
        aggregate_id = originator if isinstance(originator, UUID) else UUID(str(originator))
        events.setdefault(aggregate_id, []).append(notification)
    to_domain_event = application.mapper.to_domain_event
    built: dict[UUID, object] = {}
    for aggregate_id, own in events.items():
        first = own[0].originator_version
        start = carried.get(aggregate_id) if first != 1 else None
        if first != 1 and getattr(start, "version", None) != first - 1:
            continue
        try:
            built[aggregate_id] = mutate_all(start, map(to_domain_event, own))
        except Exception:  # the store's current state is the fallback
            log.debug("projection: %s read from the store", aggregate_id, exc_info=True)
    return Touched(events, built)


# Applies the current state of the given aggregates to the read model, in one transaction.
Refresh = Callable[[Connection, Iterable[UUID]], None]
_NOTHING_YET = "nothing projected yet"


class Projection:
    """Keeps read-model tables in step with the notification log.

    Each catch-up reads the notifications after the tracked position in batches, rewrites the
    rows of the aggregates each batch touches, and stores the new position in the same
    transaction: a crash repeats work but never skips or half-applies it. An aggregate's row
    comes from its state as of the batch, built from the batch's own events when the
    aggregate began there or continues from the previous batch (what a rebuild meets), else
    from its current state in the store. Because a row is always rewritten whole from the
    aggregate, applying a notification twice changes nothing.

    `version` is the version of what the projection writes. Bump it (the read model's
    `VERSION`) when its tables change (a column or an index added, dropped, renamed or
    retyped), or when rows already written would now come out differently (a value computed
    another way, or an upcaster that fills a value a row shows): rows are only rewritten when
    their aggregate changes, so without a bump old rows keep the old shape or meaning. A change
    to queries only, or a new event that old rows never saw, needs no bump.

    The tracking row keeps the version that wrote the rows. `create_tables()`, at start,
    compares: on a difference it drops the projection's own tables, creates them as declared,
    sets the position to 0 and catches up from the first event (docs/upgrades.md). A table
    whose columns are not the declared ones is rebuilt the same way, a net for a forgotten
    bump; a change of meaning shows only in the version.
    """

    def __init__(
        self,
        name: str,
        application: EventSourcedApplication,
        engine: Engine,
        metadata: sa.MetaData,
        refresh: Refresh,
        *,
        version: int,
        tables: Sequence[sa.Table],
        batch_size: int = 500,
    ) -> None:
        if version < 1:
            raise ValueError(f"projection {name}: version must be 1 or more, not {version}")
        self.name = name
        self.version = version
        self._application = application
        self._engine = engine
        self._tables = list(tables)  # its own: dropped and created again on a rebuild
        self._tracking = tracking_table(metadata)
        self._refresh = refresh
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._prepared = False
        self._foreign_version: int | None = None  # another version owns the rows (warned)
        # The furthest position this process saw applied (by itself or another replica).
        self._seen = 0
        # A SQLite store has one writer, this process: until it saves again there is nothing
        # new, and reads need not ask the store (whose small connection pool they would
        # queue on). Other stores are asked for their last notification id instead.
        self._local_store = application.settings.store == "sqlite"
        self._saved_since = True
        application.add_save_listener(self._saved)

    def create_tables(self) -> bool:
        """Make the tables ready, at start: create what is missing and, when the rows were
        written by another version of this projection (or a table's columns are not the
        declared ones, or nothing was projected yet), rebuild them from the events before
        returning. Returns whether it rebuilt.

        Replicas may start at once: the check and the reset run in one transaction that holds
        a lock for the service's projections (a PostgreSQL advisory lock; SQLite's write lock),
        so one replica resets and the others then find the new version and only catch up,
        taking turns batch by batch. A rebuild stopped half-way (killed, timed out) resumes
        from its last batch at the next start: the version is stored with the reset."""
        with self._lock:
            with self._writing(exclusive=True) as conn:
                reason = self._stale(conn)
                if reason is not None:
                    self._reset(conn)
            self._prepared = True
        if reason is None:
            return False
        level = logging.INFO if reason == _NOTHING_YET else logging.WARNING
        log.log(level, "projection %s: %s; projecting it from the events", self.name, reason)
        started = time.perf_counter()
        applied = self.catch_up(look=True)
        log.log(
            level,
            "projection %s (version %d) built from %d events in %.1f s",
            self.name,
            self.version,
            applied,
            time.perf_counter() - started,
        )
        return True

    def position(self) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(self._tracking.c.position).where(self._tracking.c.name == self.name)
            ).scalar()
        return int(value or 0)

    def stored_version(self) -> int | None:
        """The version that wrote the rows, as tracked; None before the first start."""
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(self._tracking.c.version).where(self._tracking.c.name == self.name)
            ).scalar()
        return None if value is None else int(value)

    def catch_up(self, *, look: bool = False) -> int:
        """Apply everything stored since the last position; return how many notifications.
        `look`: ask the store even when this process saved nothing (another process may have
        written it: the background runner's poll)."""
        if not self._prepared:
            self.create_tables()  # a read before the start hook ran: never on stale tables
        if not look and self._nothing_new():
            return 0
        applied = 0
        with self._lock:
            self._saved_since = False  # a save from now on marks it again
            try:
                carried: dict[UUID, object] = {}
                while True:
                    count, carried = self._apply_batch(carried)
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
        """Drop the tables and the position, create the tables as declared, then project the
        whole log again (under the same lock as `create_tables`)."""
        with self._lock:
            with self._writing(exclusive=True) as conn:
                self._ensure_tracking(conn)
                self._reset(conn)
            self._prepared = True
        return self.catch_up(look=True)

    # -- versions ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self, *, exclusive: bool = False) -> Iterator[Connection]:
        """A transaction that writes the projection's rows. `exclusive`: no other process's
        `create_tables` or `rebuild` runs beside it."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Take the write lock first, waiting for it: pysqlite would begin on the first
                # write, and a read transaction that then wants to write while another
                # connection writes fails at once ("database is locked"). pysqlite would also
                # run DDL outside any transaction: the check and the reset are one atomic step.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif exclusive and conn.dialect.name == "postgresql":
                # Held to the transaction's end. One key per tracking table: its column may be
                # added here, and projections of one service share it.
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key())))
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _lock_key(self) -> int:
        name = f"agentflow.readmodel:{self._tracking.schema or ''}.{self._tracking.name}"
        digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _ensure_tracking(self, conn: Connection) -> None:
        """The tracking table exists and has its `version` column (added to a table made
        before versions were recorded; its rows become version 1)."""
        self._tracking.create(conn, checkfirst=True)
        columns = sa.inspect(conn).get_columns(self._tracking.name, schema=self._tracking.schema)
        if "version" not in {column["name"] for column in columns}:
            name = conn.dialect.identifier_preparer.format_table(self._tracking)
            conn.exec_driver_sql(
                f"ALTER TABLE {name} ADD COLUMN version INTEGER NOT NULL DEFAULT 1"
            )

    def _stale(self, conn: Connection) -> str | None:
        """Why the rows cannot be caught up as they are; None when they can."""
        self._ensure_tracking(conn)
        query = sa.select(self._tracking.c.version).where(self._tracking.c.name == self.name)
        if conn.dialect.name == "postgresql":
            # Wait for a replica's batch in flight, and keep the next out until this commits
            # (taken before any table lock, so the two never wait on each other).
            query = query.with_for_update()
        stored = conn.execute(query).scalar()
        if stored is None:
            return _NOTHING_YET
        if stored != self.version:
            return f"its rows were written by version {stored}, this is version {self.version}"
        inspector = sa.inspect(conn)
        for table in self._tables:
            if not inspector.has_table(table.name, schema=table.schema):
                return f"table {table.name} is missing"
            found = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
            declared = {column.name for column in table.columns}
            if found != declared:
                log.error(
                    "projection %s: table %s has columns %s, version %d declares %s: bump "
                    "its version when its shape changes (docs/upgrades.md)",
                    self.name,
                    table.name,
                    sorted(found),
                    self.version,
                    sorted(declared),
                )
                return f"table {table.name} does not have the declared columns"
        return None

    def _reset(self, conn: Connection) -> None:
        for table in reversed(self._tables):
            table.drop(conn, checkfirst=True)
        for table in self._tables:
            table.create(conn)
        conn.execute(self._tracking.delete().where(self._tracking.c.name == self.name))
        conn.execute(
            self._tracking.insert().values(name=self.name, position=0, version=self.version)
        )
        self._seen = 0
        self._saved_since = True
        self._foreign_version = None

    def _apply_batch(self, carried: dict[UUID, object]) -> tuple[int, dict[UUID, object]]:
        """Apply the next batch; return how many notifications, and the aggregates it built
        (the next batch continues them)."""
        with self._writing() as conn:
            query = sa.select(self._tracking.c.position, self._tracking.c.version).where(
                self._tracking.c.name == self.name
            )
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()  # replicas take turns; none applies a stale batch
            row = conn.execute(query).first()
            if row is not None and row.version != self.version:
                self._foreign(row.version)
                return 0, {}
            position = int(row.position) if row else 0
            notifications = self._application.recorder.select_notifications(
                position, self._batch_size, inclusive_of_start=False
            )
            self._seen = max(self._seen, position)
            if not notifications:
                return 0, {}
            touched = build_aggregates(self._application, notifications, carried)
            self._refresh(conn, touched)
            last = notifications[-1].id
            if row is None:
                conn.execute(
                    self._tracking.insert().values(
                        name=self.name, position=last, version=self.version
                    )
                )
            else:
                conn.execute(
                    self._tracking.update()
                    .where(self._tracking.c.name == self.name)
                    .values(position=last)
                )
        self._seen = max(self._seen, last)  # committed
        return len(notifications), touched.built

    def _foreign(self, version: int) -> None:
        """Another release rebuilt the rows for its version while this process runs (a
        rolling update, or a rollback): this one no longer writes them, so neither version's
        rows are mixed into the other's. Its reads show what the other version wrote."""
        if self._foreign_version != version:
            self._foreign_version = version
            log.warning(
                "projection %s: its rows are now version %d's, this process projects version "
                "%d: it stops projecting until it is replaced or restarted",
                self.name,
                version,
                self.version,
            )


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
