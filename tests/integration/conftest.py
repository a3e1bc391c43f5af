"""Integration fixtures: the real platform as processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS
from tests.support.stack import Stack
from tests.support.stores import store_env


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One running platform per test module and backend, for tests that only add data."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    if backend == "postgres":
        dbname = str(request.getfixturevalue("postgres_database"))
        env = store_env("postgres", str(workdir / "data"), dbname, f"m{uuid.uuid4().hex[:10]}_")
    else:
        env = store_env("sqlite", str(workdir / "data"), None)
    running = Stack(workdir, env).start()
    yield running
    running.stop()


@pytest.fixture
def fresh_stack(store: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """A platform of the test's own, for tests that kill or restart parts of it."""
    made: list[Stack] = []

    def make(extra_env: dict[str, str] | None = None) -> Stack:
        created = Stack(tmp_path / f"stack{len(made)}", store, extra_env)
        made.append(created)
        return created

    yield make
    for created in made:
        created.stop()
