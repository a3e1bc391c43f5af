"""Per-user start limits over the real execution list on each store: figures read at most
once a second, starts made since counted on top, and nobody refused on stale figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.limits import ExecutionLimits, ExecutionRateLimited, TooManyRunning
from services.executor.readmodel import ExecutionList
from services.executor.settings import ExecutorSettings
from shared.readmodel import read_model_engine, read_model_metadata

GRAPH = {"nodes": [{"id": "start-1", "type": "start"}], "edges": []}


@dataclass
class Starts:
    app: ExecutorApplication
    limits: ExecutionLimits
    now: list[float]

    def start(self, owner: uuid.UUID) -> Execution:
        """What a start does: the check, then the execution saved."""
        with self.limits.lock(owner):
            self.limits.check(owner)
            execution = Execution(owner, uuid.uuid4(), 1, "w", GRAPH, {})
            self.app.save(execution)
            return execution


def starts_with(service_env: None, running: int, per_minute: int) -> Iterator[Starts]:
    settings = ExecutorSettings(
        environment="test",
        jwt_secret="x" * 40,
        max_running_executions_per_user=running,
        max_executions_per_minute_per_user=per_minute,
    )
    app = ExecutorApplication(settings)
    engine = read_model_engine(settings)
    listing = ExecutionList(app, engine, read_model_metadata(settings))
    listing.projection.create_tables()
    now = [0.0]
    try:
        yield Starts(app, ExecutionLimits(settings, listing, clock=lambda: now[0]), now)
    finally:
        engine.dispose()
        app.close()


@pytest.fixture
def three_running(service_env: None) -> Iterator[Starts]:
    yield from starts_with(service_env, running=3, per_minute=100)


def test_the_running_limit_holds_between_two_reads(three_running: Starts) -> None:
    owner = uuid.uuid4()
    for _ in range(3):
        three_running.start(owner)  # all within the same second: one read, then counted here
    with pytest.raises(TooManyRunning):
        three_running.start(owner)
    three_running.start(uuid.uuid4())  # another user is not held back


def test_a_run_that_finished_frees_its_place_at_once(three_running: Starts) -> None:
    owner = uuid.uuid4()
    started = [three_running.start(owner) for _ in range(3)]
    first = started[0]
    first.finish({})
    three_running.app.save(first)
    # Still within the second the figures were read: they say 3 running, but a start that
    # they would refuse is checked on fresh figures first.
    three_running.start(owner)
    with pytest.raises(TooManyRunning):
        three_running.start(owner)


def test_the_rate_limit_counts_starts_since_the_last_read(service_env: None) -> None:
    for starts in starts_with(service_env, running=100, per_minute=2):
        owner = uuid.uuid4()
        starts.start(owner)
        starts.now[0] = 5.0  # figures read again: one start in the last minute
        starts.start(owner)
        with pytest.raises(ExecutionRateLimited):
            starts.start(owner)
