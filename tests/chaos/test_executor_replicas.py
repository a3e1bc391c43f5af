"""Two executor api replicas on one store (issue 15): behind a round-robin balancer, as behind
a Kubernetes Service, they split the partitions of the executions (ADR 0009). Mid-load one is
killed (-9): its partitions move to the other once their leases lapse, and later it comes
back on the same port and takes its share again. Afterwards every run completed exactly
once with the output its input implies, no node result was applied twice (the stored events
say so), and the EVENTS stream holds every stored event exactly once. `make test` runs it
small on SQLite (a file both processes write); `make chaos` at full size on both stores.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import nats
import pytest

from services.executor.partitions import BUCKET, COUNT_KEY
from tests.integration.test_executions import create_workflow
from tests.support.balancer import tcp_balancer
from tests.support.chaos import (
    WORKFLOWS,
    Findings,
    LoadDriver,
    check_history,
    check_runs,
    check_stream,
    plan,
    read_histories,
    wait_settled,
)
from tests.support.fake_llm import FakeLLM
from tests.support.figures import LONG, Figures, scale
from tests.support.processes import ServiceProcess, free_port
from tests.support.stack import Stack
from tests.support.stores import BACKENDS

SUITE = "chaos: two executor api replicas, one killed"

LEASE_S = scale(4, 10)  # the default (10 s) at full size; shorter keeps `make test` quick
REPLICA_ENV = {
    "AGENTFLOW_PARTITION_LEASE_S": str(LEASE_S),
    # One user drives the whole load: the per-user limits are not what is tested here.
    "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "100000",
    "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "1000000",
}


@contextmanager
def second_replica(stack: Stack) -> Iterator[ServiceProcess]:
    """Before `stack.start()`: a second executor api on the same store and NATS, and the
    gateway's executor URL on a balancer over both. Yields the second replica, started once
    the stack is (call `start_replica`)."""
    port = free_port()
    replica = ServiceProcess(
        "executor", {**stack.env, "AGENTFLOW_EXECUTOR_PORT": str(port)}, port, stack.workdir
    )
    replica.log_path = stack.workdir / "executor-2.log"
    backends = [("127.0.0.1", stack.executor.port), ("127.0.0.1", port)]
    with tcp_balancer(free_port(), backends) as url:
        stack.env["AGENTFLOW_EXECUTOR_URL"] = url  # every process's env: the gateway's too
        try:
            yield replica
        finally:
            replica.terminate()
            replica.wait_stopped(timeout=5.0)


def lease_holders(nats_url: str) -> dict[int, str]:
    """Which replica holds each partition now (as the bucket says)."""

    async def read() -> dict[int, str]:
        nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
        try:
            kv = await nc.jetstream().key_value(BUCKET)
            count = int((await kv.get(COUNT_KEY)).value or b"0")
            holders: dict[int, str] = {}
            for n in range(count):
                with suppress(nats.js.errors.KeyNotFoundError):
                    holders[n] = ((await kv.get(f"lease.{n}")).value or b"").decode()
            return holders
        finally:
            await nc.close()

    return asyncio.run(read())


def wait_holders(
    nats_url: str, done: Callable[[dict[int, str]], bool], timeout: float
) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        holders = lease_holders(nats_url)
        if done(holders) or time.monotonic() > deadline:
            return holders
        time.sleep(0.2)


def replica_name(process: ServiceProcess) -> str:
    return f"-{process.port}"  # replica ids are <host name>-<port>


class KillOne(threading.Thread):
    """At `kill_at_s` kills the first replica (-9), notes when the other holds every
    partition, and at `back_at_s` starts the killed one again on its port."""

    def __init__(
        self, stack: Stack, other: ServiceProcess, kill_at_s: float, back_at_s: float
    ) -> None:
        super().__init__(name="kill-one-replica", daemon=True)
        self._stack, self._other = stack, other
        self._kill_at_s, self._back_at_s = kill_at_s, back_at_s
        self.before: Counter[str] = Counter()
        self.moved_after_s: float | None = None
        self.back: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _run(self) -> None:
        began = time.monotonic()
        nats_url = self._stack.nats.url
        time.sleep(self._kill_at_s)
        self.before = Counter(lease_holders(nats_url).values())
        killed_at = time.monotonic()
        self._stack.executor.kill9()
        other = replica_name(self._other)
        holders = wait_holders(
            nats_url, lambda h: len(h) == 16 and all(v.endswith(other) for v in h.values()), 60
        )
        if all(v.endswith(other) for v in holders.values()):
            self.moved_after_s = time.monotonic() - killed_at
        time.sleep(max(0.0, began + self._back_at_s - time.monotonic()))
        self._stack.executor.start()
        self._stack.executor.wait_ready(timeout=120)
        back = replica_name(self._stack.executor)
        holders = wait_holders(nats_url, lambda h: any(v.endswith(back) for v in h.values()), 60)
        self.back = Counter(holders.values())


@pytest.mark.timeout(scale(300, 3600))
@pytest.mark.parametrize("backend", BACKENDS if LONG else ["sqlite"], indirect=True)
def test_two_replicas_share_runs_and_one_killed_loses_none(
    backend: str, fresh_stack: Callable[..., Stack], fake_llm: FakeLLM, figures: Figures
) -> None:
    seed = int(os.environ.get("AGENTFLOW_CHAOS_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    count = scale(30, 400)
    interval_s = scale(300, 250) / 1000
    duration_s = count * interval_s
    stack = fresh_stack(REPLICA_ENV, workers=2)
    with second_replica(stack) as other:
        stack.start()
        other.start()
        other.wait_ready()
        # Both hold a share before the load starts (the second joined a moment ago).
        wait_holders(stack.nats.url, lambda h: len(set(h.values())) == 2, timeout=30)
        began = time.monotonic()
        client, _ = stack.user_client()
        with client, stack.admin_client() as admin:
            token = str(client.headers["Authorization"]).removeprefix("Bearer ")
            workflow_ids = {kind: create_workflow(client, body) for kind, body in WORKFLOWS.items()}
            planned = plan(rng, count, max_delay_s=0.5)
            killer = KillOne(stack, other, duration_s / 3, duration_s * 2 / 3)
            driver = LoadDriver(stack, token, workflow_ids)
            killer.start()
            driver.run(planned, interval_s)
            killer.join(timeout=300)
            assert killer.error is None, f"killing a replica failed: {killer.error!r}"
            accepted = sum(s.execution_id is not None for s in driver.starts)
            listed = wait_settled(client, accepted, timeout=scale(120, 900))
            total_s = time.monotonic() - began

            found = Findings()
            lost = check_runs(driver.starts, listed, found)
            histories = read_histories(admin, [item["id"] for item in listed])
            statuses = {item["id"]: item["status"] for item in listed}
            for execution_id, events in histories.items():
                check_history(execution_id, events, statuses[execution_id] == "completed", found)
                ends = Counter(
                    e["type"].removeprefix("Execution.")
                    for e in events
                    if e["type"].removeprefix("Execution.") in ("Completed", "Failed")
                )
                if ends != Counter(Completed=1):
                    found.problems.append(f"run {execution_id} ended {dict(ends)}")
            check_stream(stack.nats.url, histories, found)

    refusals = Counter(r for s in driver.starts for r in s.refusals)
    figures.record(SUITE, f"[{backend}] seed", seed)
    figures.record(SUITE, f"[{backend}] executions", len(listed))
    figures.record(
        SUITE, f"[{backend}] completed", sum(s == "completed" for s in statuses.values())
    )
    figures.record(SUITE, f"[{backend}] partitions held before the kill", dict(killer.before))
    moved = "never" if killer.moved_after_s is None else f"{killer.moved_after_s:.1f} s"
    figures.record(SUITE, f"[{backend}] all partitions on the survivor after", moved,
                   f"(lease {LEASE_S} s)")  # fmt: skip
    figures.record(SUITE, f"[{backend}] partitions held once it was back", dict(killer.back))
    figures.record(SUITE, f"[{backend}] starts refused, retried", sum(refusals.values()),
                   str(dict(refusals)) if refusals else "")  # fmt: skip
    figures.record(SUITE, f"[{backend}] lost", lost)
    figures.record(SUITE, f"[{backend}] duplicate runs", found.duplicate_runs)
    figures.record(SUITE, f"[{backend}] node results applied twice", found.duplicate_completions)
    figures.record(SUITE, f"[{backend}] events published twice", found.duplicate_messages)
    figures.record(SUITE, f"[{backend}] total time", total_s, "s")

    assert len(killer.before) == 2, (
        f"both replicas held partitions before the kill: {killer.before}"
    )
    assert killer.moved_after_s is not None, "the survivor never held every partition"
    assert len(killer.back) == 2, f"the replica back did not take a share: {killer.back}"
    assert not found.problems, f"seed {seed}:\n" + "\n".join(found.problems[:40])
    assert lost == 0
    assert len(listed) == count
