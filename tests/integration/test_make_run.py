"""`make run` keeps its promise: the platform that scripts/run-platform starts (supervisord,
deploy/local/) says when it is ready, survives `kill -9` of a worker and then of the executor
api in the middle of runs with every run completed, and Ctrl-C stops every process it started.

The script runs as `make run` runs it, with only ports, the data directory and the fake model
moved by environment, so it does not meet anything else on this machine."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_executions import E, W, create_workflow, edge, node
from tests.support.fake_llm import FakeLLM
from tests.support.platform_fixtures import platform_env
from tests.support.processes import REPO_ROOT, free_port
from tests.support.stack import FAST_HASHING, new_user

RUN_PLATFORM = REPO_ROOT / "scripts" / "run-platform"
SPAWNED = re.compile(r"INFO spawned: '(?P<name>[\w-]+)' with pid (?P<pid>\d+)")
# Our log formatter's and supervisord's `2026-12-02 05:13:37`, nats-server's `2026/12/02 …`.
TIMESTAMP = re.compile(r"\d{4}[-/]\d\d[-/]\d\d[ T]\d\d:\d\d:\d\d")
PROCESSES = {"logs", "nats", "auth", "workflows", "datasources", "executor", "worker-1",
             "worker-2", "gateway", "ready"}  # fmt: skip
RUNS = 6
CALL_S = 4  # each run's model call; 2 workers x 2 calls at a time leaves 2 runs queued


class RunningPlatform:
    """scripts/run-platform as a process; its output is read line by line as it comes."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        # Every process this platform starts inherits it: how its orphans would be found.
        self.marker = f"AGENTFLOW_DATA_DIR={env['AGENTFLOW_DATA_DIR']}"
        self.lines: list[str] = []
        self._changed = threading.Condition()
        # A session of its own, as a terminal's job: signals reach supervisord only.
        self.proc = subprocess.Popen(
            [str(RUN_PLATFORM)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("w", encoding="utf-8") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                log.write(line + "\n")
                log.flush()
                with self._changed:
                    self.lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float, start: int = 0) -> re.Match[str]:
        """The first line from `start` on that matches, once it has been printed."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if found := pattern.search(line):
                        return found
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-80:])
                    raise AssertionError(f"no line matched {pattern.pattern!r}:\n{tail}")
                self._changed.wait(min(left, 0.5))

    def pids(self) -> dict[str, list[int]]:
        """Every process supervisord spawned, by name, in order (restarts add pids)."""
        spawned: dict[str, list[int]] = {}
        with self._changed:
            for line in self.lines:
                if found := SPAWNED.search(line):
                    spawned.setdefault(found["name"], []).append(int(found["pid"]))
        return spawned

    def kill9(self, name: str) -> int:
        """SIGKILL the process `name`, wait until supervisord has started it again, and
        return the new pid."""
        mark = len(self.lines)
        os.kill(self.pids()[name][-1], signal.SIGKILL)
        exited = re.compile(rf"exited: {name} \(terminated by SIGKILL; not expected\)")
        self.wait_for(exited, 10, mark)
        respawned = self.wait_for(re.compile(rf"INFO spawned: '{name}' with pid (\d+)"), 10, mark)
        return int(respawned[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its parent's wait is missing


def processes_with(marker: str) -> list[int]:
    """Every live process whose environment holds `marker`: what this platform started,
    grandchildren included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def port_and_the_one_ten_above() -> int:
    """A free port whose +10 is free too: worker-2 serves its probes there."""
    while True:
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10))
            except OSError:
                continue
        return port


def platform_vars(data_dir: Path, fake_llm: FakeLLM) -> tuple[dict[str, str], int, int]:
    """The environment `make run` would have, with every port moved; the gateway's and the
    first worker's probe port."""
    ports = {name: free_port() for name in ("auth", "workflows", "executor", "datasources")}
    gateway, worker = free_port(), port_and_the_one_ten_above()
    # The machine's own settings must not leak in; run-platform sets what make run sets.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTFLOW_", "NATS_"))}
    env = {
        **inherited,
        # Nothing answers there, so run-platform starts its own nats-server on that port.
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "NATS_MONITOR_PORT": str(free_port()),
        "AGENTFLOW_DATA_DIR": str(data_dir),
        "AGENTFLOW_ENV_FILE": "",  # a developer's .env must not change the test
        **{f"AGENTFLOW_{name.upper()}_PORT": str(port) for name, port in ports.items()},
        **{
            f"AGENTFLOW_{name.upper()}_URL": f"http://127.0.0.1:{port}"
            for name, port in ports.items()
        },
        "AGENTFLOW_GATEWAY_PORT": str(gateway),
        "AGENTFLOW_GATEWAY_METRICS_PORT": str(free_port()),
        "AGENTFLOW_WORKER_METRICS_PORT": str(worker),
        **FAST_HASHING,
        **platform_env(fake_llm),
        # A killed worker's node is handed on after 3 s instead of 30; two calls at a time
        # per worker, so four calls under way means each worker holds two.
        "AGENTFLOW_NODE_ACK_WAIT_S": "3",
        "AGENTFLOW_WORKER_CONCURRENCY": "2",
    }
    return env, gateway, worker


@pytest.fixture
def platform(tmp_path: Path, fake_llm: FakeLLM) -> Iterator[tuple[RunningPlatform, int, int]]:
    data_dir = tmp_path / f"data-{uuid.uuid4().hex[:8]}"
    env, gateway, worker = platform_vars(data_dir, fake_llm)
    running = RunningPlatform(env, tmp_path / "make-run.log")
    try:
        yield running, gateway, worker
    finally:
        if running.proc.poll() is None:
            running.proc.send_signal(signal.SIGINT)
            try:
                running.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                running.proc.kill()
                running.proc.wait(timeout=10)
        for pid in processes_with(running.marker):
            os.kill(pid, signal.SIGKILL)  # an orphan: the test already failed on it


def slow_flow() -> dict[str, Any]:
    return {
        "name": f"慢模型 {uuid.uuid4().hex[:6]}",
        "nodes": [
            node("start-1", "start"),
            node("llm-1", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}"),
            node("end-1", "end"),
        ],
        "edges": [edge("start-1", "llm-1"), edge("llm-1", "end-1")],
    }


def user_client(base_url: str) -> httpx.Client:
    body = new_user()
    with httpx.Client(base_url=base_url, timeout=30) as anonymous:
        assert anonymous.post("/api/v1/auth/register", json=body).status_code == 201
        form = {"username": body["username"], "password": body["password"]}
        token = anonymous.post("/api/v1/auth/login", data=form).json()["access_token"]
    return httpx.Client(base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"})


def calls_by_marker(fake_llm: FakeLLM, markers: list[str]) -> dict[str, int]:
    """How many model calls each run's marker has had."""
    bodies = [str(request["body"]) for request in fake_llm.requests()]
    return {marker: sum(marker in body for body in bodies) for marker in markers}


def wait_calls(fake_llm: FakeLLM, markers: list[str], test: Any, what: str) -> dict[str, int]:
    deadline = time.monotonic() + 30
    while not test(counts := calls_by_marker(fake_llm, markers)):
        assert time.monotonic() < deadline, f"{what}: {counts}"
        time.sleep(0.05)
    return counts


def wait_finished(client: httpx.Client, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run's record once it has finished; the executor api may be down for a while."""
    deadline = time.monotonic() + timeout
    state: Any = None
    while time.monotonic() < deadline:
        try:
            response = client.get(f"{E}/{execution_id}/status")
            state = response.json() if response.status_code == 200 else response.text
        except httpx.HTTPError as exc:
            state = repr(exc)
        if isinstance(state, dict) and state["status"] in ("completed", "failed", "cancelled"):
            record: dict[str, Any] = client.get(f"{E}/{execution_id}").json()
            return record
        time.sleep(0.2)
    raise AssertionError(f"execution {execution_id} did not finish: {state}")


def test_make_run_survives_kill_9_of_a_worker_and_the_api_and_stops_on_ctrl_c(
    platform: tuple[RunningPlatform, int, int], fake_llm: FakeLLM
) -> None:
    running, gateway, worker_port = platform
    running.wait_for(re.compile(rf"^ready: http://localhost:{gateway}/docs$"), 120)
    assert set(running.pids()) == PROCESSES  # two workers by default, NATS started here
    # worker-2 serves its probes 10 ports above worker-1's.
    for port in (worker_port, worker_port + 10):
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200

    with user_client(f"http://127.0.0.1:{gateway}") as client:
        workflow_id = create_workflow(client, slow_flow())
        markers = [uuid.uuid4().hex[:10] for _ in range(RUNS)]
        run_ids = [
            client.post(
                f"{W}/{workflow_id}/execute",
                json={"input_data": {"text": f"{marker} [[delay={CALL_S}]]"}},
            ).json()["id"]
            for marker in markers
        ]
        # Four calls under way: each worker holds two, the other two runs wait in the queue.
        wait_calls(fake_llm, markers, lambda c: sum(n > 0 for n in c.values()) == 4, "calls")
        running.kill9("worker-1")
        # The dead worker's two calls are handed on after the ack wait: kill the api while
        # they run again (and while the queued runs' calls run too).
        wait_calls(fake_llm, markers, lambda c: sum(n > 1 for n in c.values()) >= 2, "handed on")
        running.kill9("executor")

        records = {
            marker: wait_finished(client, run_id)
            for marker, run_id in zip(markers, run_ids, strict=True)
        }
    for marker, record in records.items():
        assert record["status"] == "completed", record
        assert record["output_data"]["text"] == f"ECHO: {marker}", record
        assert record["nodes"]["llm-1"]["attempt"] == 1  # handed on, not retried
    # The kill met calls in flight: the dead worker's two were made again.
    assert sum(n > 1 for n in calls_by_marker(fake_llm, markers).values()) >= 2

    # One timestamp per line, and every line of a process names it.
    for line in running.lines:
        assert len(TIMESTAMP.findall(line)) <= 1, line
    for name in ("nats", "auth", "workflows", "datasources", "executor", "worker-1", "gateway"):
        own = [line for line in running.lines if line.startswith(f"{name} ")]
        assert own, f"no line from {name}"
        assert all(re.match(rf"{name} +\| ", line) for line in own)
        assert all(len(TIMESTAMP.findall(line)) == 1 for line in own if line.split("| ", 1)[1])

    # Ctrl-C: supervisord stops every process, then exits.
    every_pid = [pid for pids in running.pids().values() for pid in pids]
    running.proc.send_signal(signal.SIGINT)
    assert running.proc.wait(timeout=60) == 0
    assert [pid for pid in every_pid if alive(pid)] == []
    assert processes_with(running.marker) == []  # nor anything they started
