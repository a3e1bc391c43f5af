"""Events recorded in an older shape read back in the current one (eventsourcing's
`class_version` and `upcast_vN_vN+1`), on both stores: the aggregate and the read models see
the upcast values. docs/upgrades.md."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from eventsourcing.domain import Aggregate, Snapshot, event
from eventsourcing.persistence import EventStore, StoredEvent
from sqlalchemy.engine import Connection

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.integration import to_integration_event
from services.executor.readmodel import ExecutionList, ExecutionQuery
from services.executor.settings import ExecutorSettings
from shared.eventstore import EventSourcedApplication
from shared.readmodel import Projection, read_model_engine, read_model_metadata, rewrite_rows
from shared.settings import ServiceSettings
from tests.unit.conftest import TEST_SECRET


def record_as_stored(
    store: EventSourcedApplication | EventStore[Any],
    domain_events: Sequence[Any],
    reshape: Callable[[StoredEvent, dict[str, Any]], tuple[str, dict[str, Any]]],
) -> None:
    """Record events through the store's own mapper and recorder (an application's events, or
    its snapshots), after `reshape` gave each its stored topic and state: what an older
    release of the code wrote."""
    transcoder = store.mapper.transcoder
    stored = []
    for domain_event in domain_events:
        current = store.mapper.to_stored_event(domain_event)
        topic, state = reshape(current, transcoder.decode(current.state))
        stored.append(
            StoredEvent(
                originator_id=current.originator_id,
                originator_version=current.originator_version,
                topic=topic,
                state=transcoder.encode(state),
            )
        )
    store.recorder.insert_events(stored)


def stored_state(app: EventSourcedApplication, aggregate_id: uuid.UUID) -> list[dict[str, Any]]:
    return [app.mapper.transcoder.decode(e.state) for e in app.recorder.select_events(aggregate_id)]


# -- the Execution's Created event: version 2 added `trace` --------------------------------------

GRAPH: dict[str, Any] = {
    "nodes": [
        {"id": "start-1", "type": "start", "data": {}},
        {"id": "end-1", "type": "end", "data": {}},
    ],
    "edges": [{"id": "e1", "source": "start-1", "target": "end-1"}],
}


@pytest.fixture
def executor(service_env: None) -> Iterator[ExecutorApplication]:
    app = ExecutorApplication(ExecutorSettings(environment="test", jwt_secret=TEST_SECRET))
    yield app
    app.close()


def test_an_execution_created_before_traces_reads_back_with_an_empty_trace(
    executor: ExecutorApplication,
) -> None:
    owner = uuid.uuid4()
    old = Execution(owner, uuid.uuid4(), 3, "旧的运行", GRAPH, {"text": "你好"}, {"x": "y"})
    old.finish({"result": "done"})

    def version_1(stored: StoredEvent, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if stored.topic.endswith(":Execution.Created"):
            state.pop("trace")
            state.pop("class_version")
        return stored.topic, state

    record_as_stored(executor, old.collect_events(), version_1)
    assert "trace" not in stored_state(executor, old.id)[0]  # truly the old shape

    created = next(iter(executor.events.get(old.id)))
    assert isinstance(created, Execution.Created)
    assert created.trace == {}
    run = executor.get(old.id)
    assert (run.trace, run.workflow_name, run.input_data) == ({}, "旧的运行", {"text": "你好"})
    assert (run.workflow_version, run.status, run.output_data) == (
        3,
        "completed",
        {"result": "done"},
    )
    published = to_integration_event(created)
    assert published is not None
    assert published.data["owner_id"] == str(owner)

    engine = read_model_engine(executor.settings)
    try:
        listing = ExecutionList(executor, engine, read_model_metadata(executor.settings))
        listing.projection.create_tables()
        [item] = listing.query(ExecutionQuery(owner_id=owner))
        assert (item["id"], item["workflow_name"], item["status"]) == (
            old.id,
            "旧的运行",
            "completed",
        )
        assert item["input_data"] == {"text": "你好"}
    finally:
        engine.dispose()


def test_an_execution_traced_before_the_version_mark_keeps_its_trace(
    executor: ExecutorApplication,
) -> None:
    """Recorded after `trace` was added but before the event declared version 2: it has the
    field but no version mark, so it is taken for version 1 and must keep what it has."""
    traced = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {}, {"traceparent": "00-ab"})

    def unmarked(stored: StoredEvent, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        state.pop("class_version", None)
        return stored.topic, state

    record_as_stored(executor, traced.collect_events(), unmarked)
    assert executor.get(traced.id).trace == {"traceparent": "00-ab"}


def test_a_new_execution_is_recorded_as_version_2(executor: ExecutorApplication) -> None:
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {}, {"traceparent": "00-cd"})
    executor.save(execution)
    [state] = stored_state(executor, execution.id)
    assert (state["class_version"], state["trace"]) == (2, {"traceparent": "00-cd"})


# -- the convention, on an aggregate of the tests' own --------------------------------------------


class NoteV1(Aggregate):
    """`Note` as version 1 of the code had it (recorded under `Note`'s topics below)."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


class Note(Aggregate):
    """Version 2 renamed `text` to `body`; version 3 added `language` ("zh" for older notes).
    Each changed event class declares its version and one upcaster per step; the aggregate
    does the same for its snapshots' state."""

    class Written(Aggregate.Created):
        body: str
        language: str

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["body"] = state.pop("text")

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["language"] = "zh"

    class Edited(Aggregate.Event):
        body: str

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["body"] = state.pop("text")

    class_version = 3

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["body"] = state.pop("text")

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        state["language"] = "zh"

    @event(Written)
    def __init__(self, body: str, language: str) -> None:
        self.body = body
        self.language = language

    @event(Edited)
    def edit(self, body: str) -> None:
        self.body = body


class NotesSettings(ServiceSettings):
    service_name: ClassVar[str] = "notes"


class NoteList:
    """A read model of notes: what a projection sees of upcast events."""

    VERSION: ClassVar[int] = 1

    def __init__(self, app: EventSourcedApplication) -> None:
        self._app = app
        self.engine = read_model_engine(app.settings)
        metadata = read_model_metadata(app.settings)
        self.table = sa.Table(
            "note_list",
            metadata,
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("language", sa.String(8), nullable=False),
        )
        self.projection = Projection(
            "note_list",
            app,
            self.engine,
            metadata,
            self._refresh,
            version=self.VERSION,
            tables=[self.table],
        )

    def _refresh(self, conn: Connection, ids: Any) -> None:
        rewrite_rows(conn, self.table, self._app, ids, self._row_of)

    @staticmethod
    def _row_of(note: object) -> dict[str, Any] | None:
        if not isinstance(note, Note):
            return None
        return {"id": str(note.id), "body": note.body, "language": note.language}

    def rows(self) -> list[tuple[str, str]]:
        self.projection.catch_up(look=True)
        with self.engine.connect() as conn:
            query = sa.select(self.table.c.body, self.table.c.language).order_by("body")
            return [(row.body, row.language) for row in conn.execute(query)]


@pytest.fixture
def notes(service_env: None) -> Iterator[EventSourcedApplication]:
    app = EventSourcedApplication(
        NotesSettings(environment="test", jwt_secret=TEST_SECRET),
        {"IS_SNAPSHOTTING_ENABLED": "y"},
    )
    yield app
    app.close()


def as_note(stored: StoredEvent, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A NoteV1 event as the store holds it for `Note`, before `Note` was renamed in code."""
    if "originator_topic" in state:
        state["originator_topic"] = state["originator_topic"].replace(":NoteV1", ":Note")
    if "topic" in state:  # a snapshot's aggregate topic
        state["topic"] = state["topic"].replace(":NoteV1", ":Note")
    return stored.topic.replace(":NoteV1.", ":Note."), state


def test_events_of_version_1_and_2_are_upcast_to_version_3(
    notes: EventSourcedApplication,
) -> None:
    first = NoteV1("第一版")
    first.edit("edited in version 1")
    record_as_stored(notes, first.collect_events(), as_note)

    second = Note("written in version 2", "en")

    def version_2(stored: StoredEvent, state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if stored.topic.endswith(":Note.Written"):
            del state["language"]
            state["class_version"] = 2
        return stored.topic, state

    record_as_stored(notes, second.collect_events(), version_2)

    read = notes.repository.get(first.id)
    assert (read.body, read.language) == ("edited in version 1", "zh")
    assert notes.repository.get(second.id).language == "zh"  # v2 events say nothing of it

    listing = NoteList(notes)
    try:
        listing.projection.create_tables()
        assert listing.rows() == [("edited in version 1", "zh"), ("written in version 2", "zh")]
        read.edit("edited now")
        notes.save(read)
        assert stored_state(notes, first.id)[-1]["class_version"] == 2
        assert ("edited now", "zh") in listing.rows()
    finally:
        listing.engine.dispose()


def test_a_snapshot_of_version_1_is_upcast_by_the_aggregate(
    notes: EventSourcedApplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = NoteV1("snapshotted")
    old.edit("snapshotted, then edited")
    record_as_stored(notes, old.collect_events(), as_note)
    assert notes.snapshots is not None
    record_as_stored(notes.snapshots, [Snapshot.take(old)], as_note)
    upcast: list[dict[str, Any]] = []
    step = Note.upcast_v2_v3

    def counted(state: dict[str, Any]) -> None:
        upcast.append(state)
        step(state)

    monkeypatch.setattr(Note, "upcast_v2_v3", staticmethod(counted))

    read = notes.repository.get(old.id)
    assert isinstance(read, Note)
    assert (read.body, read.language, read.version) == ("snapshotted, then edited", "zh", 2)
    assert len(upcast) == 1  # read from the snapshot, through the aggregate's upcasters
