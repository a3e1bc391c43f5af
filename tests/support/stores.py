"""Event-store backends for tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
# CI sets this so a missing PostgreSQL fails the run instead of skipping half of it.
POSTGRES_REQUIRED = os.environ.get("AGENTFLOW_REQUIRE_POSTGRES", "") not in ("", "0")

# The store backends a platform test runs on: every such test runs on both.
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def postgres_unavailable_reason() -> str | None:
    try:
        with psycopg.connect(dbname="postgres", connect_timeout=3, **PG):  # type: ignore[arg-type]
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG['host']}:{PG['port']} unreachable: {exc}"


@contextmanager
def temporary_postgres_database() -> Iterator[str]:
    name = f"agentflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_env(
    backend: str, data_dir: str, dbname: str | None, schema_prefix: str = ""
) -> dict[str, str]:
    """`AGENTFLOW_*` variables that point a service at the given backend."""
    if backend == "sqlite":
        return {"AGENTFLOW_STORE": "sqlite", "AGENTFLOW_DATA_DIR": data_dir}
    assert dbname is not None
    return {
        "AGENTFLOW_STORE": "postgres",
        "AGENTFLOW_DATA_DIR": data_dir,
        "AGENTFLOW_POSTGRES_HOST": str(PG["host"]),
        "AGENTFLOW_POSTGRES_PORT": str(PG["port"]),
        "AGENTFLOW_POSTGRES_USER": str(PG["user"]),
        "AGENTFLOW_POSTGRES_DBNAME": dbname,
        "AGENTFLOW_POSTGRES_SCHEMA_PREFIX": schema_prefix,
    }
