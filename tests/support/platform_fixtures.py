"""Platform fixtures for every suite (integration, security, chaos): the real platform as
processes, on SQLite and on PostgreSQL, and the fake LLM. Loaded by the root conftest."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.fake_llm import FakeLLM
from tests.support.stack import Stack
from tests.support.stores import BACKENDS, store_env

LLM_KEY = "sk-test-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeLLM]:
    """The one honest fake: a local server speaking OpenAI's chat-completions protocol."""
    server = FakeLLM(tmp_path_factory.mktemp("fake-llm"), api_key=LLM_KEY)
    server.start()
    yield server
    server.stop()


def platform_env(fake_llm: FakeLLM) -> dict[str, str]:
    """deepseek (the seed's provider) answered by the fake; loopback allowed for the agent's
    HTTP tool, whose test server runs here. openai stays unconfigured, on purpose."""
    return {
        "DEEPSEEK_API_KEY": LLM_KEY,
        "DEEPSEEK_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "",
        "AGENTFLOW_OUTBOUND_ALLOW_NETWORKS": '["127.0.0.1/32"]',
        "AGENTFLOW_LLM_BACKOFF_S": "0.05",
    }


@contextmanager
def module_platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLM,
    extra_env: dict[str, str] | None = None,
    workers: int = 2,
) -> Iterator[Stack]:
    """A running platform on the backend named by `request.param`, with settings of its own
    over `platform_env`: what a module- or session-scoped platform fixture yields."""
    backend = str(request.param)
    workdir = tmp_path_factory.mktemp(f"stack-{backend}")
    if backend == "postgres":
        dbname = str(request.getfixturevalue("postgres_database"))
        env = store_env("postgres", str(workdir / "data"), dbname, f"m{uuid.uuid4().hex[:10]}_")
    else:
        env = store_env("sqlite", str(workdir / "data"), None)
    settings = {**platform_env(fake_llm), **(extra_env or {})}
    running = Stack(workdir, env, settings, workers=workers).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def me(stack: Stack) -> Iterator[httpx.Client]:
    """A new user's client on the test's platform (whichever `stack` its module uses)."""
    client, _ = stack.user_client()
    with client:
        yield client


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    """One running platform per test module and backend, for tests that only add data.

    A module whose tests add only data of their own users (new users, and their workflows,
    runs and sources) and read only that back shares `shared_stack` instead, by overriding
    this fixture:

        @pytest.fixture(scope="module")
        def stack(shared_stack: Stack) -> Stack:
            return shared_stack

    A module keeps its own where a test reads what is global: metrics deltas, every event
    of a kind, service logs as a whole, settings of its own."""
    with module_platform(request, tmp_path_factory, fake_llm) as running:
        yield running


@pytest.fixture(scope="session", params=BACKENDS)
def shared_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    """One running platform per backend for the whole session (see `stack`). pytest runs the
    tests that use it grouped by backend, so only one of the two runs at a time, and each is
    stopped as soon as the last test that uses it is done (not idling to the session's end)."""
    with module_platform(request, tmp_path_factory, fake_llm) as running:
        _shared_running[str(request.param)] = running
        yield running


# The shared platforms running, by backend, and the last test (node id) that uses each.
_shared_running: dict[str, Stack] = {}
_shared_last_user: dict[str, str] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:  # in the order they will run, fixtures' reordering done
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "shared_stack" in callspec.params:
            _shared_last_user[str(callspec.params["shared_stack"])] = item.nodeid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    yield
    for backend, nodeid in _shared_last_user.items():
        if nodeid == item.nodeid and backend in _shared_running:
            _shared_running.pop(backend).stop()  # its fixture's own stop is then a no-op


@pytest.fixture
def fresh_stack(
    store: dict[str, str], tmp_path: Path, fake_llm: FakeLLM
) -> Iterator[Callable[..., Stack]]:
    """A platform of the test's own, for tests that kill or restart parts of it."""
    made: list[Stack] = []

    def make(extra_env: dict[str, str] | None = None, workers: int = 2) -> Stack:
        env = {**platform_env(fake_llm), **(extra_env or {})}
        created = Stack(tmp_path / f"stack{len(made)}", store, env, workers=workers)
        made.append(created)
        return created

    yield make
    for created in made:
        created.stop()
