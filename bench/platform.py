"""The real platform for a benchmark: the test suite's `Stack` (nats-server, every service,
N workers, the gateway) on SQLite or a throwaway PostgreSQL database, plus the fake LLM."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.fake_llm import FakeLLM
from tests.support.stack import Stack
from tests.support.stores import store_env, temporary_postgres_database

LLM_KEY = "sk-bench-" + uuid.uuid4().hex


@dataclass
class Platform:
    stack: Stack
    token: str  # a registered user's JWT, for the API and the WebSocket

    @property
    def base_url(self) -> str:
        return self.stack.base_url

    @property
    def ws_url(self) -> str:
        return self.stack.base_url.replace("http://", "ws://")

    def add_worker(self) -> None:
        """One more worker process, as a scale-up would add it (stopped with the stack)."""
        self.stack.add_worker()

    def processes(self) -> dict[str, int]:
        """Every process of the platform by name, with its pid."""
        found = {"nats": self.stack.nats, **{s.name: s for s in self.stack.services}}
        found.update({w.name: w for w in self.stack.workers})
        return {name: p.proc.pid for name, p in found.items() if p.proc is not None}


@dataclass(frozen=True)
class PlatformOptions:
    workdir: Path
    postgres: bool
    workers: int
    worker_concurrency: int | None = None  # None: the settings' default
    llm: FakeLLM | None = None


@contextlib.contextmanager
def running_platform(options: PlatformOptions, name: str) -> Iterator[Platform]:
    workdir = options.workdir / f"{name}-{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as cleanup:
        if options.postgres:
            dbname = cleanup.enter_context(temporary_postgres_database())
            store = store_env("postgres", str(workdir / "data"), dbname, "bench_")
        else:
            store = store_env("sqlite", str(workdir / "data"), None)
        extra = {
            "AGENTFLOW_LOG_LEVEL": "WARNING",
            # One user drives every run here: the per-user limits (a fairness guard between
            # users) would measure themselves instead of the platform.
            "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "100000",
            "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "1000000",
            # Each client follows its run on a socket of its own: 32 or 256 at once.
            "AGENTFLOW_MAX_WEBSOCKETS_PER_USER": "100000",
        }
        if options.worker_concurrency is not None:
            extra["AGENTFLOW_WORKER_CONCURRENCY"] = str(options.worker_concurrency)
        if options.llm is not None:
            extra |= {
                "DEEPSEEK_API_KEY": LLM_KEY,
                "DEEPSEEK_BASE_URL": options.llm.base_url,
                "AGENTFLOW_LLM_BACKOFF_S": "0.05",
            }
        stack = Stack(workdir, store, extra, workers=options.workers)
        cleanup.callback(stack.stop)
        stack.start()
        user = stack.register()
        yield Platform(stack, stack.login(user["username"], user["password"]))


@contextlib.contextmanager
def fake_llm(workdir: Path, api_key: str | None = LLM_KEY) -> Iterator[FakeLLM]:
    """The fake provider; with `api_key` None it answers callers without a key too (the
    peer's workflow sends none)."""
    server = FakeLLM(workdir / "fake-llm", api_key=api_key)
    (workdir / "fake-llm").mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc/<pid>/status (VmRSS, in kB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PlatformCpu:
    """CPU time each platform process used over a block: where the cost of a run goes."""

    def __init__(self, platform: Platform) -> None:
        self._pids = platform.processes()

    def __enter__(self) -> PlatformCpu:
        self._before = {name: cpu_s(pid) for name, pid in self._pids.items()}
        self._wall = time.perf_counter()
        self.used: dict[str, float] = {}
        return self

    def __exit__(self, *_: object) -> None:
        self.wall_s = time.perf_counter() - self._wall
        self.used = {n: cpu_s(p) - self._before[n] for n, p in self._pids.items()}

    def summary(self, top: int = 4) -> str:
        """The busiest processes, in cores used on average over the block."""
        busiest = sorted(self.used.items(), key=lambda item: -item[1])[:top]
        return ", ".join(f"{name} {used / self.wall_s:.2f}" for name, used in busiest)
