"""A projection builds each aggregate from its batch's own events and writes the rows in bulk
(shared/readmodel.py): the rows must be exactly those of each aggregate's current state, on
both stores, whatever the batch size, wherever a catch-up starts, however often a batch is
applied again."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.readmodel import _row_of as execution_row
from services.executor.readmodel import execution_table
from services.executor.settings import ExecutorSettings
from services.workflows.application import WorkflowsApplication
from services.workflows.domain import Workflow
from services.workflows.readmodel import _row_of as workflow_row
from services.workflows.readmodel import workflow_table
from services.workflows.settings import WorkflowsSettings
from shared.eventstore import EventSourcedApplication
from shared.readmodel import (
    TRACKING_TABLE,
    Projection,
    read_model_engine,
    read_model_metadata,
    rewrite_rows,
    utc,
)
from shared.settings import ServiceSettings
from tests.unit.conftest import TEST_SECRET

AUTHOR = {"id": str(uuid.UUID(int=1)), "username": "tester"}
RowOf = Callable[[object], dict[str, Any] | None]


class Listing:
    """A platform read model's table and rows, projected in batches of `batch_size`."""

    def __init__(
        self,
        app: EventSourcedApplication,
        engine: Engine,
        table: Callable[[sa.MetaData], sa.Table],
        row_of: RowOf,
        batch_size: int,
    ) -> None:
        self._app = app
        self._engine = engine
        self._row_of = row_of
        metadata = read_model_metadata(app.settings)
        self.table = table(metadata)
        self.projection = Projection(
            self.table.name,
            app,
            engine,
            metadata,
            self._refresh,
            version=1,
            tables=[self.table],
            batch_size=batch_size,
        )

    def _refresh(self, conn: Connection, ids: Any) -> None:
        rewrite_rows(conn, self.table, self._app, ids, self._row_of)

    def rows(self) -> dict[str, dict[str, Any]]:
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(self.table)).mappings().all()
        return {row["id"]: _plain(dict(row)) for row in rows}

    def rewind(self, position: int) -> None:
        """The tracked position set back: the next catch-up applies those batches again."""
        tracking = sa.Table(
            TRACKING_TABLE, sa.MetaData(schema=self.table.schema), autoload_with=self._engine
        )
        with self._engine.begin() as conn:
            conn.execute(
                tracking.update()
                .where(tracking.c.name == self.table.name)
                .values(position=position)
            )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def current_rows(app: EventSourcedApplication, ids: list[UUID], row_of: RowOf) -> dict[str, Any]:
    """Each aggregate's row from its current state, read from the store: what the rows must be."""
    rows = [app.repository.read(i, row_of) for i in ids]
    return {row["id"]: _plain(row) for row in rows if row is not None}


def save_workflows(app: WorkflowsApplication) -> list[UUID]:
    """Workflows whose events interleave across saves: changed later, deleted later, created
    and deleted in one save, and some that never change."""

    def made(name: str) -> Workflow:
        content = {"name": name, "description": f"about {name}", "nodes": [], "edges": []}
        return Workflow(uuid.uuid4(), content, AUTHOR, "api", "")

    kept = [made(f"kept {i}") for i in range(3)]
    changed, gone = made("before"), made("going")
    app.save(kept[0], changed, gone)
    once = made("created and deleted at once")
    once.delete(AUTHOR)
    app.save(kept[1], once)
    for step in range(3):
        changed.change_content({"name": f"changed {step}"}, AUTHOR, "", "")
        app.save(changed, made(f"between {step}"))
    gone.delete(AUTHOR)
    app.save(gone, kept[2])
    return _ids(app)


def save_executions(app: ExecutorApplication) -> list[UUID]:
    """Executions in every state, their events spread over several saves."""
    graph: dict[str, Any] = {"nodes": [{"id": "t", "type": "transform"}], "edges": []}
    runs = [
        Execution(uuid.uuid4(), uuid.uuid4(), 1, f"运行 {i}", graph, {"q": i}) for i in range(4)
    ]
    app.save(*runs)
    for i, run in enumerate(runs[:3]):
        run.record_node_started("t", "t", "transform", 1, {})
        app.save(run)
        run.record_node_completed("t", 1, {"text": f"ok {i}"}, 3)
        if i == 0:
            run.finish({"result": "ok"})
        elif i == 1:
            run.fail("it broke", "t")
        app.save(run)
    return _ids(app)


def _ids(app: EventSourcedApplication) -> list[UUID]:
    notifications = app.recorder.select_notifications(0, 10_000)
    return list(dict.fromkeys(UUID(str(n.originator_id)) for n in notifications))


@dataclass(frozen=True)
class Kind:
    """A platform read model: its service's settings and application, how to fill its store,
    its table and what a row of it is."""

    settings: Callable[[], ServiceSettings]
    application: Callable[[Any], EventSourcedApplication]
    fill: Callable[[Any], list[UUID]]
    table: Callable[[sa.MetaData], sa.Table]
    row_of: RowOf


KINDS = {
    "workflows": Kind(
        lambda: WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET),
        WorkflowsApplication,
        save_workflows,
        workflow_table,
        workflow_row,
    ),
    "executions": Kind(
        lambda: ExecutorSettings(environment="test", jwt_secret=TEST_SECRET),
        ExecutorApplication,
        save_executions,
        execution_table,
        execution_row,
    ),
}


@pytest.fixture(params=list(KINDS.values()), ids=list(KINDS))
def kind(request: pytest.FixtureRequest, service_env: None) -> Kind:
    chosen: Kind = request.param
    return chosen


@pytest.fixture
def filled(kind: Kind) -> Iterator[tuple[EventSourcedApplication, Engine, list[UUID]]]:
    settings = kind.settings()
    app = kind.application(settings)
    engine = read_model_engine(settings)
    try:
        yield app, engine, kind.fill(app)
    finally:
        engine.dispose()
        app.close()


@pytest.mark.parametrize("batch_size", [1, 2, 3, 5, 500])
def test_rows_are_each_aggregates_current_state_whatever_the_batches(
    kind: Kind, filled: tuple[EventSourcedApplication, Engine, list[UUID]], batch_size: int
) -> None:
    app, engine, ids = filled
    listing = Listing(app, engine, kind.table, kind.row_of, batch_size)
    assert listing.projection.rebuild() == app.recorder.max_notification_id()
    assert listing.rows() == current_rows(app, ids, kind.row_of)
    assert listing.rows()  # not vacuous: some aggregates have rows


@pytest.mark.parametrize("batch_size", [2, 500])
def test_batches_applied_again_change_nothing(
    kind: Kind, filled: tuple[EventSourcedApplication, Engine, list[UUID]], batch_size: int
) -> None:
    """A crash before the position was stored repeats batches; a catch-up may then start in
    the middle of an aggregate's history (its earlier events are not in the batch)."""
    app, engine, ids = filled
    listing = Listing(app, engine, kind.table, kind.row_of, batch_size)
    listing.projection.rebuild()
    expected = current_rows(app, ids, kind.row_of)
    last = app.recorder.max_notification_id() or 0
    for position in range(last):
        listing.rewind(position)
        assert listing.projection.catch_up(look=True) == last - position
        assert listing.rows() == expected, f"applied again from position {position}"


def test_a_catch_up_after_new_events_continues_each_row(
    kind: Kind, filled: tuple[EventSourcedApplication, Engine, list[UUID]]
) -> None:
    """The usual case in a running service: aggregates that began in earlier catch-ups."""
    app, engine, ids = filled
    listing = Listing(app, engine, kind.table, kind.row_of, 3)
    listing.projection.rebuild()
    ids += kind.fill(app)
    listing.projection.catch_up(look=True)
    assert listing.rows() == current_rows(app, ids, kind.row_of)


@pytest.mark.usefixtures("service_env")
def test_a_batch_touching_more_rows_than_one_statement_takes() -> None:
    settings = WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET)
    app = WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    try:
        workflows = [
            Workflow(
                uuid.uuid4(),
                {"name": f"w{i}", "description": "", "nodes": [], "edges": []},
                AUTHOR,
                "api",
                "",
            )
            for i in range(2_100)
        ]
        app.save(*workflows)
        listing = Listing(app, engine, workflow_table, workflow_row, 5_000)
        listing.projection.rebuild()
        for workflow in workflows[::2]:
            workflow.delete(AUTHOR)
        app.save(*workflows[::2])
        listing.projection.catch_up(look=True)
        rows = listing.rows()
        assert sorted(rows) == sorted(str(w.id) for w in workflows[1::2])
        assert rows == current_rows(app, [w.id for w in workflows], workflow_row)
    finally:
        engine.dispose()
        app.close()


@pytest.mark.usefixtures("service_env")
def test_replicas_taking_turns_batch_by_batch_write_the_same_rows() -> None:
    """Another replica (or `rebuild-read-model` beside the service) may apply the batch
    between two of this one's: what this one built from its last batch then no longer
    continues into its next, and the row comes from the store instead."""
    settings = WorkflowsSettings(environment="test", jwt_secret=TEST_SECRET)
    app, other_app = WorkflowsApplication(settings), WorkflowsApplication(settings)
    engine = read_model_engine(settings)
    try:
        content = {"name": "v1", "description": "", "nodes": [], "edges": []}
        workflow = Workflow(uuid.uuid4(), content, AUTHOR, "api", "")
        app.save(workflow)
        for name in ("v2", "v3", "v4"):
            workflow.change_content({"name": name}, AUTHOR, "", "")
            app.save(workflow)
        # One notification a batch: this replica builds the workflow from its first event,
        # the other applies the second, then this one meets the third.
        mine = Listing(app, engine, workflow_table, workflow_row, 1)
        other = Listing(other_app, engine, workflow_table, workflow_row, 1)
        mine.projection.create_tables()
        mine.rewind(0)
        apply_batch = mine.projection._apply_batch

        def taking_turns(carried: dict[UUID, object]) -> tuple[int, dict[UUID, object]]:
            applied = apply_batch(carried)
            other.projection._apply_batch({})  # the other replica's turn
            return applied

        mine.projection._apply_batch = taking_turns  # type: ignore[method-assign]
        mine.projection.catch_up(look=True)
        assert mine.projection.position() == app.recorder.max_notification_id()
        assert mine.rows() == current_rows(app, [workflow.id], workflow_row)
        assert mine.rows()[str(workflow.id)]["name"] == "v4"
    finally:
        engine.dispose()
        other_app.close()
        app.close()
