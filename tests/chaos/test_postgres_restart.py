"""PostgreSQL restarted mid-run (issue 8, "Faults under load").

A platform on a PostgreSQL cluster of the test's own serves a steady load (runs of simple and
model-calling workflows, listings, reads, registrations) while the cluster is stopped for a
few seconds and started again. While it is down, every request that needs the store answers
503 with the error shape (never a 500, never a hang) and each service's `/diagnostics` says
its store is failing (its `/readyz` stays ready). Once it is back, with no service restarted,
requests succeed again, every run started reaches `completed` or `failed` with a true reason,
and the executor's store and the EVENTS stream agree event for event (nothing lost, nothing
published twice).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import psycopg
import pytest

from services.executor.integration import _TYPES as PUBLISHED_EVENT_TYPES
from tests.integration.test_executions import BRANCHING, WAITS_FOR_A_WORKER, E, W, edge, node
from tests.support.events import read_events
from tests.support.fake_llm import FakeLLM
from tests.support.figures import LONG, Figures, scale
from tests.support.platform_fixtures import platform_env
from tests.support.private_postgres import PrivatePostgres, require_private_postgres
from tests.support.stack import Stack, new_user

pytestmark = pytest.mark.postgres

SUITE = "chaos: PostgreSQL restarted"
ERROR_KEYS = {"detail", "error_code", "status_code"}
# The service's own store is down, or (starting a run) the workflows service it asks is.
STORE_DOWN_CODES = {"STORE_UNAVAILABLE", "UPSTREAM_UNAVAILABLE"}
# A request that needs the store must give up within this while it is down (a safety net,
# far above the store's own 5 s connect timeout; not a speed target).
BOUNDED_S = 20.0
STORE_SERVICES = ("auth", "workflows", "executor", "datasources")

# A model node whose provider refuses the request outright: the run fails, for that reason.
REFUSED: dict[str, Any] = {
    "name": "模型拒绝",
    "nodes": [
        node("start-1", "start"),
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}"),
        node("end-1", "end"),
    ],
    "edges": [edge("start-1", "ask"), edge("ask", "end-1")],
}
# A model node whose first attempt fails (three 500s: the call's own retries too) and whose
# second, 2 s later, succeeds: the orchestrator's retry timers run across the outage.
RETRIED: dict[str, Any] = {
    **REFUSED,
    "name": "重试一次",
    "nodes": [
        node("start-1", "start"),
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}",
             retry={"max_attempts": 3, "backoff_seconds": 2}),
        node("end-1", "end"),
    ],
}  # fmt: skip
UNIQUE = "@UNIQUE@"  # replaced by a new value in each run's input


@dataclass(frozen=True)
class Kind:
    """A workflow of the mix, what to run it with, and how its runs must end."""

    body: dict[str, Any]
    input_data: dict[str, Any]
    status: Literal["completed", "failed"]
    output: dict[str, Any] | None = None
    reason: str = ""  # a word the failure's reason must contain

    def inputs(self) -> dict[str, Any]:
        return {k: v.replace(UNIQUE, uuid.uuid4().hex) for k, v in self.input_data.items()}


KINDS = (
    Kind(BRANCHING, {"text": "hello"}, "completed", {"shout": "hello!", "lang": "en"}),
    Kind(
        WAITS_FOR_A_WORKER,
        {"text": "slow [[delay=0.8]]"},
        "completed",
        {"shout": "slow [[delay=0.8]]!", "lang": "en"},
    ),
    Kind(RETRIED, {"text": f"again [[fail=500x3 key={UNIQUE}]]"}, "completed"),
    Kind(
        REFUSED, {"text": "no [[fail=400x100000 key=pg-restart-refused]]"}, "failed", reason="400"
    ),
)


@dataclass(frozen=True)
class Answer:
    action: str
    sent: float
    received: float
    status: int  # 0: no HTTP answer at all (the client gave up or the connection broke)
    body: Any


@dataclass(frozen=True)
class Run:
    execution_id: str
    kind: Kind


@dataclass
class User:
    """One user doing what users do, from a thread of its own, until stopped; every answer is
    kept."""

    client: httpx.Client
    workflows: list[tuple[str, Kind]]
    seed: int
    answers: list[Answer] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BOUNDED_S * 2)

    def _work(self) -> None:
        pick = random.Random(self.seed)
        while not self._stop.is_set():
            action = pick.choice(("execute", "execute", "list", "read", "runs", "register"))
            self._do(action, pick)
            time.sleep(0.05)

    def _do(self, action: str, pick: random.Random) -> None:
        kind: Kind | None = None
        sent = time.monotonic()
        try:
            if action == "execute":
                workflow_id, kind = pick.choice(self.workflows)
                response = self.client.post(
                    f"{W}/{workflow_id}/execute", json={"input_data": kind.inputs()}
                )
            elif action == "list":
                response = self.client.get(W)
            elif action == "read" and self.runs:
                response = self.client.get(f"{E}/{pick.choice(self.runs).execution_id}")
            elif action == "register":
                response = self.client.post("/api/v1/auth/register", json=new_user())
            else:
                response = self.client.get(E)
        except httpx.HTTPError:
            self.answers.append(Answer(action, sent, time.monotonic(), 0, None))
            return
        body = _json(response)
        self.answers.append(Answer(action, sent, time.monotonic(), response.status_code, body))
        if kind is not None and response.status_code == 201:
            self.runs.append(Run(str(body["id"]), kind))


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    require_private_postgres()
    cluster = PrivatePostgres().create()
    yield cluster
    cluster.destroy()


def test_requests_fail_cleanly_while_postgres_is_down_and_everything_recovers(
    private_postgres: PrivatePostgres, fake_llm: FakeLLM, tmp_path: Path, figures: Figures
) -> None:
    pg = private_postgres
    limits = {
        "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "100000",
        "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "1000000",
    }
    prefix = f"r{uuid.uuid4().hex[:10]}_"
    store = pg.store_env(str(tmp_path / "data"), prefix)
    stack = Stack(tmp_path / "stack", store, {**platform_env(fake_llm), **limits}, workers=2)
    # Outages: one clean shutdown in `make test`; a crash as well in `make chaos`.
    outages: list[tuple[Literal["fast", "immediate"], float]] = [("fast", 4.0)]
    if LONG:
        outages = [("fast", 8.0), ("immediate", 8.0)]
    threads = scale(3, 6)
    try:
        stack.start()
        users: list[User] = []
        for seed in range(threads):
            client, _ = stack.user_client()
            users.append(User(client, [(_create(client, kind), kind) for kind in KINDS], seed))
        for user in users:
            user.start()
        time.sleep(scale(2, 6))

        windows: list[tuple[float, float]] = []
        recoveries: list[float] = []
        for mode, down_s in outages:
            pg.stop(mode)
            stopped = time.monotonic()
            _assert_store_reported_failing(stack)
            time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))
            starting = time.monotonic()
            windows.append((stopped, starting))
            pg.start()
            recoveries.append(_time_to_recover(stack, users[0], since=starting))
            time.sleep(scale(2, 6))
        for user in users:
            user.stop()

        answers = [answer for user in users for answer in user.answers]
        during = [a for a in answers if any(s <= a.sent and a.received <= e for s, e in windows)]
        _report(figures, answers, during, sum(len(user.runs) for user in users), recoveries)

        # While the store was down: 503 of the documented shape for everything, promptly.
        assert during, f"no request answered while PostgreSQL was down: {windows}"
        for answer in during:
            assert answer.status == 503, answer
            assert isinstance(answer.body, dict), answer
            assert answer.body.keys() >= ERROR_KEYS, answer
            assert answer.body["error_code"] in STORE_DOWN_CODES, answer
            assert answer.body["status_code"] == 503, answer
            assert answer.received - answer.sent < BOUNDED_S, answer
        # At any time: no 5xx but 503, and every request answered.
        assert [a for a in answers if a.status >= 500 and a.status != 503] == []
        assert [a for a in answers if a.status == 0] == []

        # After: every run started reaches its end, and the right one.
        lost = _finish_all(users)
        figures.record(SUITE, "executions lost", len(lost))
        assert lost == [], f"runs lost or stuck: {lost}"
        # The executor's store and the EVENTS stream agree.
        stored = _stored_execution_events(pg, prefix)
        assert stored, "no execution event stored"
        published = _published_execution_events(stack, expected=len(stored))
        twice = [msg_id for msg_id, count in Counter(published).items() if count > 1]
        missing = set(stored) - set(published)
        figures.record(SUITE, "events published twice", len(twice))
        figures.record(SUITE, "events stored but not published", len(missing))
        assert twice == []
        assert sorted(published) == sorted(stored)
        # Nothing was restarted: every process is the one started at first.
        for process in (*stack.services, *stack.workers):
            assert process.running, process.name
    finally:
        stack.stop()


def _create(client: httpx.Client, kind: Kind) -> str:
    response = client.post(W, json=kind.body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assert_store_reported_failing(stack: Stack) -> None:
    """Each service with a store says, on /diagnostics (checked every few seconds), that its
    store is failing, and stays ready: the store is every replica's (ADR 0008)."""
    for name in STORE_SERVICES:
        service = getattr(stack, name)
        deadline = time.monotonic() + BOUNDED_S
        while True:
            response = httpx.get(service.base_url + "/diagnostics", timeout=BOUNDED_S)
            body = response.json()
            if body.get("dependencies", {}).get("store") == "failing":
                break
            assert time.monotonic() < deadline, (name, body)
            time.sleep(0.1)
        assert response.status_code == 503, (name, response.text)
        assert body.keys() >= ERROR_KEYS, body
        assert body["error_code"] == "DEPENDENCY_UNAVAILABLE", body
        assert httpx.get(service.base_url + "/readyz", timeout=BOUNDED_S).status_code == 200


def _time_to_recover(stack: Stack, user: User, since: float) -> float:
    """Seconds from PostgreSQL's start until a user can register, list and run again."""
    deadline = since + 120
    while time.monotonic() < deadline:
        with stack.client() as anonymous:
            registered = anonymous.post("/api/v1/auth/register", json=new_user())
        listed = user.client.get(W)
        workflow_id, kind = user.workflows[0]
        started = user.client.post(f"{W}/{workflow_id}/execute", json={"input_data": kind.inputs()})
        for response in (registered, listed, started):  # not yet up: a 503, nothing worse
            assert response.status_code < 500 or response.status_code == 503, response.text
        if started.status_code == 201:  # checked at the end like every other run
            user.runs.append(Run(str(started.json()["id"]), kind))
        if (registered.status_code, listed.status_code, started.status_code) == (201, 200, 201):
            return time.monotonic() - since
        time.sleep(0.2)
    raise AssertionError("the platform did not recover within 120 s of PostgreSQL's start")


def _finish_all(users: list[User]) -> list[str]:
    """Wait for every run to end and check how it ended; return the ones that never did."""
    waiting = {run.execution_id: (run, user.client) for user in users for run in user.runs}
    deadline = time.monotonic() + 180
    while waiting and time.monotonic() < deadline:
        for execution_id, (run, client) in list(waiting.items()):
            response = client.get(f"{E}/{execution_id}")
            assert response.status_code == 200, response.text
            record = response.json()
            if record["status"] in ("pending", "running"):
                continue
            del waiting[execution_id]
            assert record["status"] == run.kind.status, record
            if run.kind.output is not None:
                assert record["output_data"] == run.kind.output, record
            if run.kind.status == "failed":
                assert run.kind.reason in record["error"]["message"], record
        time.sleep(0.5)
    return sorted(waiting)


def _stored_execution_events(pg: PrivatePostgres, prefix: str) -> list[str]:
    """`<execution id>:<version>` of every stored execution event the relay must publish."""
    with psycopg.connect(pg.dsn()) as conn:
        rows = conn.execute(
            f'SELECT originator_id, originator_version, topic FROM "{prefix}executor".'  # noqa: S608
            "executorapplication_events"
        ).fetchall()
    return [
        f"{originator}:{version}"
        for originator, version, topic in rows
        if str(topic).rsplit(":", 1)[-1] in PUBLISHED_EVENT_TYPES
    ]


def _published_execution_events(stack: Stack, expected: int) -> list[str]:
    """Message ids on EVENTS for executions, once the relay has caught up (or after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        found = asyncio.run(read_events(stack.nats.url, "events.execution.>"))
        if len(found) >= expected or time.monotonic() > deadline:
            time.sleep(1.0)  # a late duplicate would show up now
            return [
                e.msg_id for e in asyncio.run(read_events(stack.nats.url, "events.execution.>"))
            ]
        time.sleep(0.5)


def _report(
    figures: Figures,
    answers: list[Answer],
    during: list[Answer],
    runs: int,
    recoveries: list[float],
) -> None:
    figures.record(SUITE, "requests", len(answers))
    figures.record(SUITE, "executions started", runs)
    figures.record(SUITE, "requests answered 503 while down", sum(a.status == 503 for a in during))
    figures.record(
        SUITE, "requests while down, other answers", sum(a.status != 503 for a in during)
    )
    figures.record(
        SUITE, "5xx other than 503", sum(a.status >= 500 and a.status != 503 for a in answers)
    )
    for index, seconds in enumerate(recoveries, 1):
        figures.record(SUITE, f"time to recover after PostgreSQL is back (#{index})", seconds, "s")
