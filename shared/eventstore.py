"""The event-store base every service's application extends.

Persistence is chosen by settings (SQLite file under `.data/` or a PostgreSQL schema per
service); the code above it is the same. After each save, listeners (the outbox relay,
projections) are woken in-process, because the SQLite recorder cannot `subscribe()`.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

import eventsourcing.persistence as es
import psycopg
import sqlalchemy.exc as sa_exc
from eventsourcing.application import Application, Repository
from eventsourcing.persistence import IntegrityError, Recording, TrackingRecorder
from eventsourcing.postgres import ConnectionPool, PostgresDatastore
from eventsourcing.sqlite import SQLiteConnectionPool, SQLiteDatastore

from shared.settings import ServiceSettings

log = logging.getLogger("agentflow.eventstore")

SaveListener = Callable[[], None]
# The store cannot be reached (down, restarting, connections lost or exhausted): worth trying
# again shortly. eventsourcing wraps psycopg's errors; read models raise SQLAlchemy's.
STORE_UNREACHABLE: tuple[type[Exception], ...] = (
    es.OperationalError,
    es.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
)
T = TypeVar("T")


def mutate_all(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """Apply events in turn: eventsourcing's `project_aggregate` without its per-event
    `isinstance` check against a runtime Protocol, which on Python 3.11 cost more than
    applying the event itself."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ThreadSafeRepository(Repository[UUID]):
    """eventsourcing's `Repository`, safe for many threads with its aggregate cache on, and
    with a cheaper projector.

    With a cache, `get` fast-forwards the cached aggregate under a lock, but deep-copies it
    after releasing that lock: one thread could copy the cached object while another
    fast-forwards (mutates) it, failing with "dictionary changed size during iteration". Here
    one lock per aggregate (striped) covers both steps; different aggregates still proceed
    in parallel."""

    STRIPES = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stripes = [threading.Lock() for _ in range(self.STRIPES)]

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("projector_func", mutate_all)
        if self.cache is None or version is not None:
            return super().get(aggregate_id, version=version, **kwargs)
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            return super().get(aggregate_id, **kwargs)

    def read(self, aggregate_id: UUID, view: Callable[[Any], T]) -> T:
        """`view(aggregate)` of the current state without copying it (what read models
        need): `view` runs under the aggregate's lock and must neither change nor keep it."""
        if self.cache is None:
            return view(super().get(aggregate_id, projector_func=mutate_all))
        with self._stripes[hash(aggregate_id) % self.STRIPES]:
            aggregate = super().get(
                aggregate_id, projector_func=mutate_all, deepcopy_from_cache=False
            )
            return view(aggregate)


class EventSourcedApplication(Application[UUID]):
    """An eventsourcing `Application` configured from a service's settings."""

    repository: ThreadSafeRepository

    def construct_repository(self) -> ThreadSafeRepository:
        plain = super().construct_repository()
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return ThreadSafeRepository(
            event_store=plain.event_store,
            snapshot_store=plain.snapshot_store,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=plain.fastforward,
            fastforward_skipping=plain.fastforward_skipping,
            deepcopy_from_cache=plain.deepcopy_from_cache,
        )

    def __init__(self, settings: ServiceSettings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        if settings.store == "postgres":
            ensure_postgres_schema(settings)
        self._listeners: list[SaveListener] = []
        self._listeners_lock = threading.Lock()
        # The last notification id this process saved: what a write must see published
        # before its answer (shared/web/published_writes.py).
        self.saved_through = 0
        # Settings win over the process environment, so one process can host a test store.
        super().__init__(env={**settings.event_store_env(), **(env or {})})
        self._tracking: TrackingRecorder | None = None
        if settings.store == "sqlite":
            self._widen_sqlite_pool()
        datastore = getattr(self.factory, "datastore", None)
        if isinstance(datastore, PostgresDatastore):
            # Same pool, same state; only how it behaves while the server is unreachable.
            datastore.pool.__class__ = FailFastPool

    def _widen_sqlite_pool(self) -> None:
        """eventsourcing gives SQLite 15 connections and a 5 s wait for one, not settable by
        environment. Every request thread (up to 40) may need one at once: under load a
        request waited its 5 s and failed. Same file, same locking; more room, more patience."""
        datastore = getattr(self.factory, "datastore", None)
        if not isinstance(datastore, SQLiteDatastore):
            return
        old = datastore.pool
        if old.is_sqlite_memory_mode:  # the one connection holds the database
            return
        datastore.pool = SQLiteConnectionPool(
            db_name=old.db_name,
            lock_timeout=old.lock_timeout,
            pool_size=5,
            max_overflow=59,
            pool_timeout=30.0,
        )
        old.close()

    @property
    def tracking(self) -> TrackingRecorder:
        """Positions of the relay and the projections, in the same store as the events."""
        if self._tracking is None:
            self._tracking = self.factory.tracking_recorder()
        return self._tracking

    def add_save_listener(self, listener: SaveListener) -> None:
        with self._listeners_lock:
            self._listeners.append(listener)

    def remove_save_listener(self, listener: SaveListener) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        with self._listeners_lock:
            for recording in recordings:
                notification_id = recording.notification.id
                if notification_id > self.saved_through:
                    self.saved_through = notification_id
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener()
            except Exception:  # a listener must never fail a save that already committed
                log.exception("save listener failed")

    def retry_on_conflict(self, command: Callable[[], T], attempts: int = 20) -> T:
        """Run a read-modify-save `command` again from fresh state when another writer won.

        The store's optimistic concurrency rejects the stale save; re-running the command
        re-reads the aggregate, so no write is lost and none is applied over another. A short
        random pause before each retry spreads writers that collided, so that with many at
        once each soon gets its turn (they would otherwise re-read and collide in step).
        """
        for attempt in range(1, attempts + 1):
            try:
                return command()
            except IntegrityError:
                if attempt == attempts:
                    raise
                log.debug("write conflict; retrying from fresh state (attempt %d)", attempt)
                time.sleep(random.uniform(0, 0.002 * attempt))  # noqa: S311 - jitter, not secrets
        raise AssertionError("unreachable")

    def store_is_reachable(self) -> bool:
        self.recorder.max_notification_id()
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} store={self.settings.store}>"


class FailFastPool(ConnectionPool[Any]):
    """eventsourcing's PostgreSQL pool, failing at once while the server cannot be reached.

    psycopg_pool lets a caller sleep through its backoff (1, 2, 4 s) checking dead pooled
    connections one by one, or wait its whole timeout (5 s) for one it cannot make, and
    eventsourcing tries each store call 10 times: with PostgreSQL down a request took some
    50 s to fail, and once it was back the pool reconnected only after its backoff. Here,
    once a pooled connection failed its check or a connect failed, a caller connects itself
    instead: refused at once while the server is down (the caller gets the error: a 503),
    and a fresh connection, which joins the pool, as soon as it is up.
    """

    QUICK_CONNECT_S = 2.0
    _unreachable = False  # a connection broke or a connect failed, and none succeeded since

    def _connect(self, timeout: float | None = None) -> Any:
        try:
            conn = super()._connect(timeout)
        except Exception:
            self._unreachable = True
            raise
        self._unreachable = False
        return conn

    def _getconn_with_check_loop(self, deadline: float) -> Any:
        while True:
            if self._unreachable and (conn := self._connect_here()) is not None:
                return conn
            conn = self._getconn_unchecked(deadline - time.monotonic())
            try:
                self._check_connection(conn)
            except Exception:
                self._putconn(conn, from_getconn=True)
                self._unreachable = True  # is the server there at all? The next turn asks.
                continue
            except BaseException:
                self._putconn(conn, from_getconn=True)
                raise
            return conn

    def _connect_here(self) -> Any:
        """A new connection for the caller (it joins the pool when put back), or None when
        the pool is full: the server answered, so the caller waits for a pooled one."""
        with self._lock:
            room = self._nconns < self.max_size
            if room:
                self._nconns += 1
        try:
            conn = self._connect(self.QUICK_CONNECT_S)
        except BaseException:
            if room:
                with self._lock:
                    self._nconns -= 1
            raise
        if room:
            return conn
        conn._pool = None
        conn.close()
        return None


def ensure_postgres_schema(settings: ServiceSettings) -> None:
    """eventsourcing creates tables but not schemas; one schema per service."""
    statement = psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
        psycopg.sql.Identifier(settings.postgres_schema)
    )
    # Two replicas may race to create it; either way it exists afterwards.
    with (
        psycopg.connect(**_pg_connect_kwargs(settings), autocommit=True) as conn,
        contextlib.suppress(psycopg.errors.UniqueViolation),
    ):
        conn.execute(statement)


def _pg_connect_kwargs(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "host": settings.postgres_host,
        "port": settings.postgres_port,
        "user": settings.postgres_user,
        "password": settings.postgres_password.get_secret_value() or None,
        "dbname": settings.postgres_dbname,
        "connect_timeout": 5,
    }
