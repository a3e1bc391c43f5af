"""Read models across upgrades: a projection whose version changed is rebuilt from the events at
start, on both stores, once even when replicas start together; a process of another version
stops writing rows that are not its own. docs/upgrades.md."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.datasources.application import Actor as DataSourceActor
from services.datasources.application import DataSourcesApplication
from services.datasources.readmodel import DataSourceList, data_source_table
from services.datasources.readmodel import _row_of as data_source_row
from services.datasources.settings import DataSourcesSettings
from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.readmodel import ExecutionList, execution_table
from services.executor.readmodel import _row_of as execution_row
from services.executor.settings import ExecutorSettings
from services.workflows.application import WorkflowsApplication
from services.workflows.domain import Workflow
from services.workflows.readmodel import ListQuery, WorkflowList, workflow_table
from services.workflows.readmodel import _row_of as workflow_row
from services.workflows.settings import WorkflowsSettings
from shared.eventstore import EventSourcedApplication
from shared.readmodel import (
    Projection,
    read_model_engine,
    read_model_metadata,
    rewrite_rows,
    utc,
)
from shared.settings import ServiceSettings
from tests.unit.conftest import TEST_SECRET

AUTHOR = {"id": str(uuid.UUID(int=1)), "username": "tester"}


def save_workflow(app: EventSourcedApplication, name: str) -> Workflow:
    content = {"name": name, "description": f"about {name}", "nodes": [], "edges": []}
    workflow = Workflow(uuid.uuid4(), content, AUTHOR, "api", "")
    app.save(workflow)
    return workflow


def table_rows(engine: Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table)).mappings().all()
    return {row["id"]: plain(dict(row)) for row in rows}


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """Times as aware UTC datetimes (SQLite gives them back naive)."""
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def make_old_tables(
    engine: Engine,
    table: sa.Table,
    *,
    without: str,
    rows: list[dict[str, Any]],
    tracked: tuple[str, int, int | None],
) -> None:
    """The tables as an older release left them: `table` without the column `without`, holding
    `rows`, and the tracking row (name, position, version; version None: a tracking table
    from before versions were recorded)."""
    old = sa.MetaData(schema=table.schema)
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in table.columns
        if c.name != without
    ]
    old_table = sa.Table(table.name, old, *columns)
    name, position, version = tracked
    tracking_columns: list[sa.Column[Any]] = [
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    ]
    if version is not None:
        tracking_columns.append(sa.Column("version", sa.Integer, nullable=False))
    old_tracking = sa.Table("projection_tracking", old, *tracking_columns)
    old.create_all(engine)
    with engine.begin() as conn:
        values: dict[str, Any] = {"name": name, "position": position}
        if version is not None:
            values["version"] = version
        conn.execute(old_tracking.insert().values(**values))
        for row in rows:
            conn.execute(old_table.insert().values({k: v for k, v in row.items() if k != without}))


def column_names(engine: Engine, table: sa.Table) -> set[str]:
    with engine.connect() as conn:
        columns = sa.inspect(conn).get_columns(table.name, schema=table.schema)
    return {c["name"] for c in columns}


# -- the platform's read models, rebuilt from an older version's tables -------------------------


@dataclass(frozen=True)
class Case:
    """One read model of the platform: its application, how to store aggregates for it, what a
    row of it is, and a column an older shape of its table lacked."""

    settings: Callable[[], ServiceSettings]
    application: Callable[[Any], EventSourcedApplication]
    model: Callable[[Any, Engine, sa.MetaData], Any]  # WorkflowList and the like
    model_version: int
    table: Callable[[sa.MetaData], sa.Table]
    fill: Callable[[Any], list[UUID]]
    row_of: Callable[[object], dict[str, Any] | None]
    missing_column: str


def fill_workflows(app: WorkflowsApplication) -> list[UUID]:
    kept = save_workflow(app, "Kept")
    changed = save_workflow(app, "before")
    changed.change_content({"name": "Changed"}, AUTHOR, "", "")
    gone = save_workflow(app, "Gone")
    gone.delete(AUTHOR)
    app.save(changed, gone)
    return [kept.id, changed.id, gone.id]


def fill_executions(app: ExecutorApplication) -> list[UUID]:
    graph: dict[str, Any] = {"nodes": [{"id": "t", "type": "transform"}], "edges": []}
    done = Execution(uuid.uuid4(), uuid.uuid4(), 2, "完成的", graph, {"q": "你好"})
    done.record_node_started("t", "t", "transform", 1, {})
    done.record_node_completed("t", 1, {"text": "ok"}, 3)
    done.finish({"result": "ok"})
    pending = Execution(uuid.uuid4(), uuid.uuid4(), 1, "pending", graph, {})
    app.save(done, pending)
    return [done.id, pending.id]


def fill_data_sources(app: DataSourcesApplication) -> list[UUID]:
    actor = DataSourceActor(uuid.uuid4())
    first = app.register(actor, "inline", "json", "a document", {"data": {"a": 1}})
    second = app.register(actor, "tested", "json", "", {"data": [1, 2]})
    app.record_test(second.id, True, "ok", None)
    return [first.id, second.id]


CASES = {
    "workflows": Case(
        lambda: WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET),
        WorkflowsApplication,
        WorkflowList,
        WorkflowList.VERSION,
        workflow_table,
        fill_workflows,
        workflow_row,
        "sort_name",
    ),
    "executions": Case(
        lambda: ExecutorSettings(environment="test", jwt_secret=TEST_SECRET),
        ExecutorApplication,
        ExecutionList,
        ExecutionList.VERSION,
        execution_table,
        fill_executions,
        execution_row,
        "search_text",
    ),
    "data sources": Case(
        lambda: DataSourcesSettings(environment="test", jwt_secret=TEST_SECRET),
        DataSourcesApplication,
        DataSourceList,
        DataSourceList.VERSION,
        data_source_table,
        fill_data_sources,
        data_source_row,
        "last_test",
    ),
}


@pytest.mark.usefixtures("service_env")
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_read_model_of_an_older_version_is_rebuilt_at_start(case: Case) -> None:
    settings = case.settings()
    app = case.application(settings)
    engine = read_model_engine(settings)
    try:
        ids = case.fill(app)
        last = app.recorder.max_notification_id() or 0
        table = case.table(read_model_metadata(settings))
        old_rows = [row for i in ids if (row := app.repository.read(i, case.row_of))]
        # The older release had projected everything, in its shape, and had one row of an
        # aggregate this store does not hold (a rebuild starts from nothing).
        orphan = {**old_rows[0], "id": str(uuid.uuid4())}
        make_old_tables(
            engine,
            table,
            without=case.missing_column,
            rows=[*old_rows, orphan],
            tracked=(table.name, last, case.model_version - 1),
        )

        model = case.model(app, engine, read_model_metadata(settings))
        assert model.projection.create_tables() is True
        assert case.missing_column in column_names(engine, model.table)
        assert model.projection.stored_version() == case.model_version
        assert model.projection.position() == last

        def expected() -> dict[str, dict[str, Any]]:
            rows = [app.repository.read(i, case.row_of) for i in ids]
            return {row["id"]: plain(row) for row in rows if row is not None}

        assert table_rows(engine, model.table) == expected()
        # New rows go into the new shape.
        ids += case.fill(app)
        model.projection.catch_up()
        assert table_rows(engine, model.table) == expected()
        assert len(expected()) > len(old_rows)
    finally:
        engine.dispose()
        app.close()


@pytest.mark.usefixtures("service_env")
def test_the_workflow_list_answers_from_its_rebuilt_rows() -> None:
    """Sorting by name needs `sort_name`, the column the older table lacked."""
    settings = WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET)
    app = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    try:
        for name in ("beta", "Gamma", "alpha"):
            save_workflow(app, name)
        table = workflow_table(read_model_metadata(settings))
        make_old_tables(
            engine,
            table,
            without="sort_name",
            rows=[],
            tracked=("workflow_list", app.recorder.max_notification_id() or 0, 0),
        )
        listing = WorkflowList(app, engine, read_model_metadata(settings))
        listing.projection.create_tables()
        save_workflow(app, "Delta")
        names = [
            item["name"]
            for item in listing.query(ListQuery(owner_id=None, sort_by="name", sort_order="asc"))
        ]
        assert names == ["alpha", "beta", "Delta", "Gamma"]
    finally:
        engine.dispose()
        app.close()


# What each read model's table looked like at each version. A failure here means a table
# changed: bump the read model's VERSION and record the new shape under it (docs/upgrades.md).
SHAPES = {
    ("workflow_list", 1): "69a6f78bcc2d",
    ("execution_list", 1): "7ecf1b198ed9",
    ("data_source_list", 1): "524d96ff616c",
}


def shape_of(table: sa.Table) -> str:
    """Columns, types, nullability and indexes: what a rebuild would have to change."""
    parts = [f"{c.name} {c.type} {c.nullable} {c.primary_key}" for c in table.columns]
    parts += sorted(f"{i.name} {[c.name for c in i.columns]} {i.unique}" for i in table.indexes)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    ("table", "version"),
    [
        (workflow_table, WorkflowList.VERSION),
        (execution_table, ExecutionList.VERSION),
        (data_source_table, DataSourceList.VERSION),
    ],
    ids=["workflows", "executions", "data sources"],
)
def test_a_table_changes_only_with_its_version(
    table: Callable[[sa.MetaData], sa.Table], version: int
) -> None:
    made = table(sa.MetaData())
    assert SHAPES.get((made.name, version)) == shape_of(made), (
        f"{made.name} changed shape: bump its read model's VERSION to {version + 1} and add "
        f"({made.name!r}, {version + 1}): {shape_of(made)!r} to SHAPES"
    )


# -- the mechanism, on a read model of the tests' own -------------------------------------------


class NameList:
    """Workflow names. Version 1 holds the name; version 2 adds its case-folded form; version
    3 keeps the columns but holds names upper-cased (a change of meaning only)."""

    def __init__(self, app: EventSourcedApplication, engine: Engine, version: int) -> None:
        self._app = app
        self._engine = engine
        self.version = version
        metadata = read_model_metadata(app.settings)
        columns = [
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("name", sa.Text, nullable=False),
        ]
        if version >= 2:
            columns.append(sa.Column("folded", sa.Text, nullable=False))
        self.table = sa.Table("test_name_list", metadata, *columns)
        self.projection = Projection(
            "test_name_list",
            app,
            engine,
            metadata,
            self._refresh,
            version=version,
            tables=[self.table],
        )

    def _refresh(self, conn: Connection, ids: Any) -> None:
        rewrite_rows(conn, self.table, self._app, ids, self._row_of)

    def _row_of(self, aggregate: object) -> dict[str, Any] | None:
        if not isinstance(aggregate, Workflow) or aggregate.deleted:
            return None
        row = {"id": str(aggregate.id), "name": aggregate.name}
        if self.version >= 2:
            row["folded"] = aggregate.name.casefold()
        if self.version >= 3:
            row["name"] = aggregate.name.upper()
        return row

    def rows(self) -> dict[str, dict[str, Any]]:
        return table_rows(self._engine, self.table)


@dataclass
class Replica:
    app: WorkflowsApplication
    engine: Engine

    def names(self, version: int) -> NameList:
        return NameList(self.app, self.engine, version)


@pytest.fixture
def replicas(service_env: None) -> Iterator[Callable[[], Replica]]:
    """Processes of one service over one store: each its own application and engine."""
    made: list[Replica] = []

    def make() -> Replica:
        settings = WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET)
        replica = Replica(WorkflowsApplication(settings), read_model_engine(settings))
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.engine.dispose()
        replica.app.close()


def test_the_same_version_keeps_its_rows_and_position(replicas: Callable[[], Replica]) -> None:
    replica = replicas()
    save_workflow(replica.app, "one")
    assert replica.names(1).projection.create_tables() is True  # nothing projected yet
    position = replica.names(1).projection.position()
    assert position == replica.app.recorder.max_notification_id()

    again = replica.names(1)
    assert again.projection.create_tables() is False
    assert again.projection.position() == position
    assert [row["name"] for row in again.rows().values()] == ["one"]


def test_tracking_from_before_versions_counts_as_version_1(
    replicas: Callable[[], Replica],
) -> None:
    replica = replicas()
    workflow = save_workflow(replica.app, "Named")
    position = replica.app.recorder.max_notification_id() or 0
    row = {"id": str(workflow.id), "name": "Named"}
    table = NameList(replica.app, replica.engine, 1).table
    make_old_tables(
        replica.engine, table, without="", rows=[row], tracked=(table.name, position, None)
    )

    first = replica.names(1)
    assert first.projection.create_tables() is False  # the shapes of that time: version 1
    assert first.projection.stored_version() == 1
    assert first.projection.position() == position

    second = replica.names(2)
    assert second.projection.create_tables() is True
    assert second.rows() == {str(workflow.id): {**row, "folded": "named"}}


def test_columns_that_differ_are_rebuilt_even_without_a_bump(
    replicas: Callable[[], Replica],
) -> None:
    replica = replicas()
    workflow = save_workflow(replica.app, "Named")
    table = NameList(replica.app, replica.engine, 2).table
    make_old_tables(
        replica.engine,
        table,
        without="folded",
        rows=[{"id": str(workflow.id), "name": "Named"}],
        tracked=(table.name, replica.app.recorder.max_notification_id() or 0, 2),
    )
    names = replica.names(2)
    assert names.projection.create_tables() is True
    assert names.rows() == {str(workflow.id): {"id": str(workflow.id), "name": "Named",
                                                 "folded": "named"}}  # fmt: skip


def test_rebuild_makes_the_declared_tables(replicas: Callable[[], Replica]) -> None:
    """What `agentflow-workflows rebuild-read-model` runs: it fixes the shape too."""
    replica = replicas()
    workflow = save_workflow(replica.app, "Named")
    table = NameList(replica.app, replica.engine, 2).table
    make_old_tables(replica.engine, table, without="folded", rows=[], tracked=(table.name, 0, 2))
    names = replica.names(2)
    assert names.projection.rebuild() == replica.app.recorder.max_notification_id()
    assert names.rows()[str(workflow.id)]["folded"] == "named"


@pytest.mark.parametrize("found", ["nothing", "version 1", "tracking without versions"])
def test_replicas_starting_at_once_rebuild_once(
    replicas: Callable[[], Replica], found: str
) -> None:
    """Two replicas of a new release start together on what the old one left (or on nothing):
    one resets the tables, the other waits and finds them reset."""
    first, second = replicas(), replicas()
    for i in range(30):
        save_workflow(first.app, f"W{i}")
    if found == "version 1":
        assert first.names(1).projection.create_tables() is True
    elif found == "tracking without versions":
        table = first.names(1).table
        make_old_tables(first.engine, table, without="", rows=[], tracked=(table.name, 0, None))
    starting = [first.names(2), second.names(2)]
    barrier = threading.Barrier(len(starting))
    rebuilt: list[bool] = []
    errors: list[BaseException] = []

    def start(names: NameList) -> None:
        barrier.wait()
        try:
            rebuilt.append(names.projection.create_tables())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(names,)) for names in starting]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(rebuilt) == [False, True]
    rows = starting[1].rows()
    assert len(rows) == 30
    assert all(row["folded"] == row["name"].casefold() for row in rows.values())
    assert starting[0].projection.position() == first.app.recorder.max_notification_id()
    assert starting[0].projection.stored_version() == 2


def test_a_process_of_the_older_version_stops_writing(replicas: Callable[[], Replica]) -> None:
    """A rolling update: the new release rebuilt the rows for version 3 while a process of
    version 2 still runs. That process must not write rows of its own meaning among them."""
    old, new = replicas(), replicas()
    save_workflow(old.app, "first")
    running = old.names(2)
    running.projection.create_tables()

    upgraded = new.names(3)
    assert upgraded.projection.create_tables() is True
    later = save_workflow(old.app, "later")
    assert running.projection.catch_up(look=True) == 0
    assert str(later.id) not in upgraded.rows()

    upgraded.projection.catch_up(look=True)
    assert sorted(row["name"] for row in upgraded.rows().values()) == ["FIRST", "LATER"]
    assert running.projection.stored_version() == 3


def test_a_batch_holds_the_sqlite_write_lock_from_its_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read transaction that then writes fails at once while another connection writes
    ("database is locked"): a batch takes the write lock before it reads, so a second writer
    (a replica, `rebuild-read-model`) waits for it instead of failing it."""
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AGENTFLOW_ENV_FILE", "")
    settings = WorkflowsSettings(
        environment="test", jwt_secret=TEST_SECRET, store="sqlite", data_dir=tmp_path
    )
    app = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    other_writer_refused: list[bool] = []

    class Probed(NameList):
        def _refresh(self, conn: Connection, ids: Any) -> None:
            other = sqlite3.connect(tmp_path / "workflows-read.sqlite", timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.rollback()
                other_writer_refused.append(False)
            except sqlite3.OperationalError:
                other_writer_refused.append(True)
            finally:
                other.close()
            super()._refresh(conn, ids)

    try:
        save_workflow(app, "one")
        names = Probed(app, engine, 1)
        names.projection.create_tables()
        assert other_writer_refused == [True]
        assert [row["name"] for row in names.rows().values()] == ["one"]
    finally:
        engine.dispose()
        app.close()
