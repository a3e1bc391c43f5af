"""Faults under load (issue 8): a load driver, a fault injector and the checks afterwards.

The driver starts executions of mixed workflows whose input determines their output exactly
(the fake LLM echoes, and its delays and scripted 429/500 answers do not change the text);
the injector kills parts of the platform meanwhile; the checks read what a user and an
auditor see: every run's final state and output, each run's stored events, and the EVENTS
stream.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.integration.test_executions import E, W, edge, node
from tests.support.events import read_events
from tests.support.stack import Stack

FINAL = ("completed", "failed", "cancelled")
RETRIED_STATUSES = (502, 503, 504)  # what a client retries: the gateway's "upstream down"

# -- workflows whose input determines their output -------------------------------------------


def _llm(node_id: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return node(node_id, "llm", provider="deepseek", model="deepseek-chat", prompt=prompt, **extra)


CHAIN: dict[str, Any] = {
    "name": "chaos: llm then condition",
    "nodes": [
        node("start-1", "start"),
        _llm("ask", "{input.text}{input.fault}"),
        node("long?", "condition", expression="len({value}) > 12"),
        node("out-long", "output", mapping={"kind": "long", "answer": "{ask}"}),
        node("out-short", "output", mapping={"kind": "short", "answer": "{ask}"}),
        node("end-1", "end"),
    ],
    "edges": [
        edge("start-1", "ask"),
        edge("ask", "long?"),
        edge("long?", "out-long", "true"),
        edge("long?", "out-short", "false"),
        edge("out-long", "end-1"),
        edge("out-short", "end-1"),
    ],
}

PARALLEL: dict[str, Any] = {
    "name": "chaos: two llm branches joined",
    "nodes": [
        node("start-1", "start"),
        _llm("left", "{input.left}{input.fault_left}", stream=False),
        _llm("right", "{input.right}{input.fault_right}"),
        node("join", "transform", template="{left} + {right}"),
        node("out", "output", mapping={"joined": "{join}"}),
        node("end-1", "end"),
    ],
    "edges": [
        edge("start-1", "left"),
        edge("start-1", "right"),
        edge("left", "join"),
        edge("right", "join"),
        edge("join", "out"),
        edge("out", "end-1"),
    ],
}

LOOP: dict[str, Any] = {
    "name": "chaos: a loop of llm calls",
    "nodes": [
        node("start-1", "start"),
        node("each", "loop", items_path="{input.words}", item_variable="word", parallelism=2),
        {**_llm("say", "{word}"), "parentId": "each"},
        node("out", "output", mapping={"said": "{each}"}),
        node("end-1", "end"),
    ],
    "edges": [edge("start-1", "each"), edge("each", "out"), edge("out", "end-1")],
}

WORKFLOWS = {"chain": CHAIN, "parallel": PARALLEL, "loop": LOOP}


def _fault(rng: random.Random, max_delay_s: float) -> str:
    """Directives for the fake LLM: a random latency, sometimes a 429 or a 500 first (which
    the platform's retries inside the call absorb; a unique key makes each fail once)."""
    directives = f"[[delay={rng.uniform(0, max_delay_s):.2f}]]"
    roll = rng.random()
    if roll < 0.2:
        directives += f"[[fail=429x1 key={uuid.uuid4().hex}]]"
    elif roll < 0.35:
        directives += f"[[fail=500x1 key={uuid.uuid4().hex}]]"
    return directives


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 14)))


@dataclass(frozen=True)
class Planned:
    seq: str  # in input_data: tells which start made a run
    kind: str
    input_data: dict[str, Any]
    expected: dict[str, Any]  # output_data


def plan(rng: random.Random, count: int, max_delay_s: float = 1.0) -> list[Planned]:
    tag = uuid.uuid4().hex[:6]
    planned: list[Planned] = []
    for n in range(count):
        seq = f"{tag}-{n}"
        kind = rng.choice(list(WORKFLOWS))
        if kind == "chain":
            text = _word(rng)
            answer = f"ECHO: {text}"
            data: dict[str, Any] = {"text": text, "fault": _fault(rng, max_delay_s)}
            expected: dict[str, Any] = {
                "kind": "long" if len(answer) > 12 else "short",
                "answer": answer,
            }
        elif kind == "parallel":
            left, right = _word(rng), _word(rng)
            data = {
                "left": left,
                "right": right,
                "fault_left": _fault(rng, max_delay_s),
                "fault_right": _fault(rng, max_delay_s),
            }
            expected = {"joined": f"ECHO: {left} + ECHO: {right}"}
        else:
            words = [_word(rng) for _ in range(rng.randint(1, 4))]
            data = {"words": [w + _fault(rng, max_delay_s / 2) for w in words]}
            expected = {"said": [f"ECHO: {w}" for w in words]}
        planned.append(Planned(seq, kind, {**data, "seq": seq}, expected))
    return planned


def model_prompts(planned: list[Planned]) -> Counter[str]:
    """Each LLM prompt the planned runs send and how many requests it takes without faults
    (one, or two when the fake LLM is told to fail the first)."""
    prompts: Counter[str] = Counter()
    for item in planned:
        data = item.input_data
        if item.kind == "chain":
            sent = [data["text"] + data["fault"]]
        elif item.kind == "parallel":
            sent = [data["left"] + data["fault_left"], data["right"] + data["fault_right"]]
        else:
            sent = list(data["words"])
        for prompt in sent:
            prompts[prompt] += 2 if "[[fail=" in prompt else 1
    return prompts


def model_calls_repeated(planned: list[Planned], received: list[dict[str, Any]]) -> int:
    """Requests beyond those `model_prompts` expects: calls run again because the worker
    running them died (shows that kills landed mid-node) or NATS was down longer than the
    ack wait."""
    expected = model_prompts(planned)
    seen: Counter[str] = Counter()
    for request in received:
        users = [m for m in request["body"].get("messages", []) if m.get("role") == "user"]
        if users and isinstance(users[-1].get("content"), str):
            seen[users[-1]["content"]] += 1
    return sum(max(0, seen[prompt] - n) for prompt, n in expected.items())


# -- the load driver --------------------------------------------------------------------------


@dataclass
class Start:
    """One start as a client sees it: the tries it took and the id it was finally given."""

    planned: Planned
    execution_id: str | None = None
    refusals: list[str] = field(default_factory=list)  # "503", "ConnectError", ...
    error: str | None = None  # an answer a client would not retry (must not happen)


class LoadDriver:
    """Starts the planned executions at a steady pace, retrying refused starts as a client
    would (503/502/504 or a dropped connection: wait a moment, send again)."""

    def __init__(self, stack: Stack, token: str, workflow_ids: dict[str, str]) -> None:
        self._stack = stack
        self._headers = {"Authorization": f"Bearer {token}"}
        self._workflow_ids = workflow_ids
        self.starts: list[Start] = []
        self._local = threading.local()
        self._clients: list[httpx.Client] = []

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._stack.client(headers=self._headers)
            self._local.client = client
            self._clients.append(client)
        return client

    def run(self, planned: list[Planned], interval_s: float, give_up_s: float = 240.0) -> None:
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = []
            for n, item in enumerate(planned):
                time.sleep(max(0.0, began + n * interval_s - time.monotonic()))
                start = Start(item)
                self.starts.append(start)
                futures.append(pool.submit(self._start, start, time.monotonic() + give_up_s))
            for future in futures:
                future.result()  # a bug in the driver fails the test, not silently
        for client in self._clients:
            client.close()

    def _start(self, start: Start, deadline: float) -> None:
        url = f"{W}/{self._workflow_ids[start.planned.kind]}/execute"
        while time.monotonic() < deadline:
            try:
                response = self._client().post(url, json={"input_data": start.planned.input_data})
            except httpx.TransportError as exc:
                start.refusals.append(type(exc).__name__)
                time.sleep(0.5)
                continue
            if response.status_code == 201:
                start.execution_id = str(response.json()["id"])
                return
            if response.status_code in RETRIED_STATUSES:
                start.refusals.append(str(response.status_code))
                time.sleep(0.5)
                continue
            start.error = f"{response.status_code} {response.text[:300]}"
            return
        start.error = "still refused when the driver gave up"


def list_executions(client: httpx.Client) -> list[dict[str, Any]]:
    """Every execution of the client's user, through the public list (pages of 100)."""
    found: list[dict[str, Any]] = []
    while True:
        response = client.get(E, params={"skip": len(found), "limit": 100})
        response.raise_for_status()
        page: list[dict[str, Any]] = response.json()
        found.extend(page)
        if len(page) < 100:
            return found


def wait_settled(client: httpx.Client, expected: int, timeout: float) -> list[dict[str, Any]]:
    """Poll until `expected` runs exist and none is pending or running (or time runs out)."""
    deadline = time.monotonic() + timeout
    listed: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            listed = list_executions(client)
        except httpx.HTTPError:  # the executor may be down right now
            time.sleep(1.0)
            continue
        if len(listed) >= expected and all(item["status"] in FINAL for item in listed):
            return listed
        time.sleep(1.0)
    return listed


# -- the fault injector -----------------------------------------------------------------------


@dataclass
class Fault:
    kind: str
    at: float  # time.time() when it was injected
    back_s: float | None = None  # until the part was serving again (readyz), if it is a service


class FaultInjector(threading.Thread):
    """Kills a random worker every `worker_every_s` on average (and starts a new one), and at
    the given fractions of `duration_s` kills the executor api, kills nats-server and restarts
    the workflows service, one at a time."""

    def __init__(
        self,
        stack: Stack,
        rng: random.Random,
        duration_s: float,
        worker_every_s: float,
        once: dict[str, float],
        nats_down_s: float = 1.0,
    ) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self._stack = stack
        self._rng = rng
        self._duration_s = duration_s
        self._worker_every_s = worker_every_s
        self.once = once
        self._nats_down_s = nats_down_s
        self.faults: list[Fault] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._inject()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _inject(self) -> None:
        actions: dict[str, Callable[[], float | None]] = {
            "executor api kill -9": self._kill_api,
            "nats-server kill -9": self._kill_nats,
            "workflows restart": self._restart_workflows,
        }
        schedule: list[tuple[float, str]] = [
            (fraction * self._duration_s, kind) for kind, fraction in self.once.items()
        ]
        # Kills at jittered intervals: a fixed period equal to the ack wait would meet each
        # redelivered command again with the next kill.
        at = self._worker_every_s
        while at < self._duration_s:
            schedule.append((at, "worker kill -9"))
            at += self._worker_every_s * self._rng.uniform(0.5, 1.5)
        began = time.monotonic()
        for offset, kind in sorted(schedule):
            time.sleep(max(0.0, began + offset - time.monotonic()))
            fault = Fault(kind, time.time())
            self.faults.append(fault)
            if kind == "worker kill -9":
                self._kill_worker()
            else:
                fault.back_s = actions[kind]()

    def _kill_worker(self) -> None:
        alive = [w for w in self._stack.workers if w.running]
        if alive:
            self._rng.choice(alive).kill9()
        self._stack.add_worker()

    def _kill_api(self) -> float:
        began = time.monotonic()
        self._stack.executor.kill9()
        self._stack.executor.start()
        self._stack.executor.wait_ready(timeout=120)
        return time.monotonic() - began

    def _kill_nats(self) -> float:
        began = time.monotonic()
        self._stack.nats.kill9()
        time.sleep(self._nats_down_s)  # a real outage, not only a blip
        self._stack.nats.start()  # same port, same JetStream store directory
        for service in (self._stack.executor, self._stack.workflows, self._stack.auth):
            service.wait_ready(timeout=120)
        return time.monotonic() - began

    def _restart_workflows(self) -> float:
        began = time.monotonic()
        self._stack.workflows.stop()
        self._stack.workflows.start()
        self._stack.workflows.wait_ready(timeout=120)
        return time.monotonic() - began


def finished_at(item: dict[str, Any]) -> float | None:
    """When a listed run ended (server clock: created_at + execution_time)."""
    if item.get("execution_time") is None:
        return None
    created = datetime.fromisoformat(str(item["created_at"]).replace("Z", "+00:00"))
    return (created + timedelta(milliseconds=int(item["execution_time"]))).timestamp()


def next_completion_s(fault: Fault, listed: list[dict[str, Any]]) -> float | None:
    """From the fault to the next run that completed after it."""
    ends = [
        t
        for item in listed
        if item["status"] == "completed" and (t := finished_at(item)) is not None
    ]
    later = [t - fault.at for t in ends if t > fault.at]
    return min(later) if later else None


# -- the checks -------------------------------------------------------------------------------


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    duplicate_runs: int = 0  # more than one run for one start, or a run nobody was given
    duplicate_completions: int = 0  # a node result applied twice
    duplicate_messages: int = 0  # a stored event published twice
    unpublished: int = 0  # a stored event missing from the stream


def check_runs(starts: list[Start], listed: list[dict[str, Any]], found: Findings) -> int:
    """Each start made exactly one run, which ended with the output its input implies;
    returns how many were lost (never started, or not finished)."""
    by_seq: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in listed:
        by_seq[str((item.get("input_data") or {}).get("seq"))].append(item)
    lost = 0
    for start in starts:
        seq = start.planned.seq
        runs = by_seq.pop(seq, [])
        if start.error is not None:
            found.problems.append(f"start {seq} answered {start.error}")
        if start.execution_id is None:
            lost += 1
            if runs:
                found.duplicate_runs += len(runs)
                found.problems.append(f"refused start {seq} created {[r['id'] for r in runs]}")
            continue
        if [r["id"] for r in runs] != [start.execution_id]:
            found.duplicate_runs += max(0, len(runs) - 1)
            found.problems.append(
                f"start {seq} was given {start.execution_id}, the list has "
                f"{[(r['id'], r['status']) for r in runs]}"
            )
        for run in runs:
            if run["id"] != start.execution_id:
                continue
            if run["status"] not in FINAL:
                lost += 1
                found.problems.append(f"run {run['id']} ({seq}) left {run['status']}")
            elif run["status"] != "completed" or run["output_data"] != start.planned.expected:
                found.problems.append(
                    f"run {run['id']} ({start.planned.kind}) {run['status']}: "
                    f"output {run['output_data']}, error {run.get('error')}, "
                    f"expected {start.planned.expected}"
                )
        if not runs:
            lost += 1
    for seq, runs in by_seq.items():
        found.duplicate_runs += len(runs)
        found.problems.append(f"runs nobody started ({seq}): {[r['id'] for r in runs]}")
    return lost


def check_history(
    execution_id: str, events: list[dict[str, Any]], completed_run: bool, found: Findings
) -> None:
    """The stored events of one run: contiguous versions, each attempt started once and
    ended once, each node completed exactly once."""
    versions = [e["version"] for e in events]
    if versions != list(range(1, len(events) + 1)):
        found.problems.append(f"run {execution_id}: versions {versions[:5]}... not contiguous")
    started: Counter[tuple[str, int]] = Counter()
    ended: Counter[tuple[str, int]] = Counter()
    completed: Counter[str] = Counter()
    for event in events:
        kind = event["type"].removeprefix("Execution.")
        data = event["data"]
        if kind == "NodeStarted":
            started[(data["run_key"], data["attempt"])] += 1
        elif kind in ("NodeCompleted", "NodeFailed"):
            ended[(data["run_key"], data["attempt"])] += 1
            if kind == "NodeCompleted":
                completed[data["run_key"]] += 1
        elif kind == "IterationFinished":  # a loop item's result counted once
            ended[(f"{data['run_key']} item", data["index"])] += 1
    twice: list[tuple[object, int]] = [(k, n) for k, n in completed.items() if n > 1]
    twice += [(k, n) for counts in (started, ended) for k, n in counts.items() if n > 1]
    for key, count in twice:
        found.duplicate_completions += 1
        found.problems.append(f"run {execution_id}: {key} recorded {count} times")
    for key in ended:
        if key not in started and not key[0].endswith(" item"):
            found.problems.append(f"run {execution_id}: {key} ended without starting")
    if completed_run:  # no node here has a retry policy: every node started ends completed
        for run_key in {k for k, _ in started}:
            if completed[run_key] != 1:
                found.problems.append(f"run {execution_id}: {run_key} never completed")


def read_histories(admin: httpx.Client, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    histories: dict[str, list[dict[str, Any]]] = {}
    for execution_id in ids:
        response = admin.get(f"{E}/{execution_id}/history")
        response.raise_for_status()
        histories[execution_id] = response.json()["events"]
    return histories


def check_stream(
    nats_url: str,
    histories: dict[str, list[dict[str, Any]]],
    found: Findings,
    timeout: float = 60.0,
) -> None:
    """The executor's stored events and the EVENTS stream agree: every stored event is there
    with its `<aggregate>:<version>` id, exactly once, and nothing else is."""
    stored = {f"{eid}:{e['version']}" for eid, events in histories.items() for e in events}
    deadline = time.monotonic() + timeout
    while True:  # the relay may still be catching up after the last fault
        events = asyncio.run(read_events(nats_url, "events.execution.>"))
        published = Counter(e.msg_id for e in events)
        if stored <= set(published) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    duplicates = {m: n for m, n in published.items() if n > 1}
    missing = stored - set(published)
    extra = set(published) - stored
    found.duplicate_messages = sum(n - 1 for n in duplicates.values())
    found.unpublished = len(missing)
    if duplicates:
        found.problems.append(f"published more than once: {sorted(duplicates)[:10]}")
    if missing:
        found.problems.append(f"stored, never published: {sorted(missing)[:10]}")
    if extra:
        found.problems.append(f"published, never stored: {sorted(extra)[:10]}")
