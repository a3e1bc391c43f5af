"""Fixtures every test may use: the event-store backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import NatsServer
from tests.support.stores import (
    BACKENDS,
    POSTGRES_REQUIRED,
    postgres_unavailable_reason,
    store_env,
    temporary_postgres_database,
)

# The platform fixtures (stack, fresh_stack, fake_llm) and the printed figures serve every suite.
pytest_plugins = ["tests.support.platform_fixtures", "tests.support.figures"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """One throwaway database per test session; tests isolate themselves by schema prefix."""
    reason = postgres_unavailable_reason()
    if reason is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(f"AGENTFLOW_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
    with temporary_postgres_database() as name:
        yield name


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if name == "postgres":
        request.getfixturevalue("postgres_database")
    return name


@pytest.fixture
def store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """`AGENTFLOW_*` variables for a fresh, empty store on the chosen backend."""
    if backend == "postgres":
        dbname = str(request.getfixturevalue("postgres_database"))
        return store_env("postgres", str(tmp_path / "data"), dbname, f"t{uuid.uuid4().hex[:10]}_")
    return store_env("sqlite", str(tmp_path / "data"), None)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream and its own store directory, for the whole session."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()
