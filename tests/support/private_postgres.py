"""A PostgreSQL cluster of a test's own, which the test may stop and start at will.

The machine's PostgreSQL (5432) serves every other test, so it is never stopped; a test that
takes the store away starts this one instead: `initdb` into a temporary directory, trust
auth, loopback only, a free port, kept across `stop()` / `start()`. PostgreSQL refuses to run
as root, so under root the server runs as the `postgres` OS user (via `runuser`), with a data
directory that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

import psycopg
import pytest

from tests.support.processes import free_port
from tests.support.stores import POSTGRES_REQUIRED

SUPERUSER = "postgres"
DBNAME = "agentflow"
_RUN_AS = "postgres"  # the OS user the server runs as when the tests run as root


def _binaries() -> tuple[str, str] | None:
    """`initdb` and `pg_ctl` of one installation: on PATH, else Debian's newest."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates = (Path(bindir) / "initdb", Path(bindir) / "pg_ctl")
        if all(c.exists() for c in candidates):
            return str(candidates[0]), str(candidates[1])
    return None


def _run_as() -> str | None:
    """The OS user to run the server as: None for ourselves, a name when we are root."""
    return _RUN_AS if os.geteuid() == 0 else None


def private_postgres_unavailable_reason() -> str | None:
    if _binaries() is None:
        return "no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_RUN_AS)
        except KeyError:
            return f"running as root and there is no {_RUN_AS!r} OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing"
    return None


def require_private_postgres() -> None:
    """Skip the calling test without PostgreSQL binaries, or fail it when CI requires them."""
    reason = private_postgres_unavailable_reason()
    if reason is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(f"AGENTFLOW_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)


class PrivatePostgres:
    """One cluster: `create()` once, then `start()` / `stop()` as often as the test likes."""

    def __init__(self) -> None:
        binaries = _binaries()
        assert binaries is not None, private_postgres_unavailable_reason()
        self._initdb, self._pg_ctl = binaries
        self._user = _run_as()
        self.port = free_port()
        self.host = "127.0.0.1"
        # Not under pytest's tmp_path: that is root's, mode 0700, closed to the server's user.
        self.root = Path(tempfile.mkdtemp(prefix="agentflow-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self.running = False

    def _command(self, *argv: str) -> None:
        full = ["runuser", "-u", self._user, "--", *argv] if self._user else list(argv)
        result = subprocess.run(full, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n{self.logs()[-4000:]}"
            )

    def create(self) -> PrivatePostgres:
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._command(
            self._initdb, "-D", str(self.data_dir), "-U", SUPERUSER, "--auth=trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DBNAME}"')
        return self

    def start(self) -> None:
        # Loopback TCP only; the socket in our own directory (the system's belongs to 5432).
        # fsync off: the OS survives a server stop, so no committed write is lost by it.
        options = (
            f"-p {self.port} -c listen_addresses={self.host} "
            f"-c unix_socket_directories={self.root} -c fsync=off -c max_connections=300"
        )
        self._command(
            self._pg_ctl, "start", "-D", str(self.data_dir), "-l", str(self.log_path),
            "-o", options, "-w", "-t", "60",
        )  # fmt: skip
        self.running = True

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """`fast` disconnects every client and shuts down cleanly; `immediate` is a crash
        (recovered from the WAL at the next start)."""
        self._command(self._pg_ctl, "stop", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = DBNAME) -> str:
        return (
            f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=3"
        )

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def store_env(self, data_dir: str, schema_prefix: str = "") -> dict[str, str]:
        """`AGENTFLOW_*` variables pointing a platform at this cluster (cf. `stores.store_env`)."""
        return {
            "AGENTFLOW_STORE": "postgres",
            "AGENTFLOW_DATA_DIR": data_dir,
            "AGENTFLOW_POSTGRES_HOST": self.host,
            "AGENTFLOW_POSTGRES_PORT": str(self.port),
            "AGENTFLOW_POSTGRES_USER": SUPERUSER,
            "AGENTFLOW_POSTGRES_DBNAME": DBNAME,
            "AGENTFLOW_POSTGRES_SCHEMA_PREFIX": schema_prefix,
        }
