"""Fixtures every test may use: the event-store backends (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
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

# Settings read in tests (and by processes started with this environment) come from the test
# and its environment alone, never from a developer's .env in the checkout.
os.environ["AGENTFLOW_ENV_FILE"] = ""

# The platform fixtures (stack, fresh_stack, fake_llm) and the printed figures serve every suite.
pytest_plugins = ["tests.support.platform_fixtures", "tests.support.figures"]

# The per-test limit of [tool.pytest.ini_options] `timeout` is sized for `make test`; the long
# suites (`make chaos`, `make security`) run the same tests at full size, so there each test
# gets this one unless it sets its own with @pytest.mark.timeout.
LONG_SUITE_TIMEOUT_S = 1800


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Imported here: importing a pytest_plugins module at the top would keep pytest from
    # rewriting its asserts.
    from tests.support.figures import LONG

    if not LONG:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LONG_SUITE_TIMEOUT_S))


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
