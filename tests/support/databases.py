"""Throwaway databases for connector tests: MariaDB (with its own user) and PostgreSQL.

Each context manager yields the connection info as a data source config would hold it
(`host`, `port`, `database`, `username`, `password`) and drops what it made on exit.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pytest

from tests.support.stores import (
    PG,
    POSTGRES_REQUIRED,
    postgres_unavailable_reason,
    temporary_postgres_database,
)

MARIADB: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
# CI sets this so a missing MariaDB fails the run instead of skipping the MySQL tests.
MARIADB_REQUIRED = os.environ.get("AGENTFLOW_REQUIRE_MARIADB", "") not in ("", "0")
# The hosts a test user may connect from (MariaDB matches 127.0.0.1 as localhost too).
_USER_HOSTS = ("localhost", "127.0.0.1", "%")


def _admin() -> pymysql.connections.Connection[Any]:
    return pymysql.connect(autocommit=True, connect_timeout=3, **MARIADB)


def mariadb_unavailable_reason() -> str | None:
    try:
        with _admin():
            return None
    except pymysql.MySQLError as exc:
        return f"MariaDB at {MARIADB['host']}:{MARIADB['port']} unreachable: {exc}"


@contextmanager
def temporary_mariadb_database() -> Iterator[dict[str, Any]]:
    """A fresh database and a user with a password, granted everything on it and nothing else."""
    suffix = uuid.uuid4().hex[:12]
    database, user, password = f"agentflow_test_{suffix}", f"af_{suffix}", secrets.token_hex(12)
    # Names and password are made here of hex digits: safe to put in the statements as they are.
    statements = [f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4"]
    for host in _USER_HOSTS:
        statements.append(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        statements.append(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{user}'@'{host}'")
    try:
        with _admin() as conn, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    except BaseException:
        _drop_mariadb(database, user)
        raise
    try:
        yield {
            "host": MARIADB["host"],
            "port": MARIADB["port"],
            "database": database,
            "username": user,
            "password": password,
        }
    finally:
        _drop_mariadb(database, user)


def _drop_mariadb(database: str, user: str) -> None:
    with _admin() as conn, conn.cursor() as cursor:
        for host in _USER_HOSTS:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        cursor.execute(f"DROP DATABASE IF EXISTS `{database}`")


@contextmanager
def temporary_postgres_source() -> Iterator[dict[str, Any]]:
    """A fresh PostgreSQL database (CREATE/DROP DATABASE with autocommit), as the superuser."""
    with temporary_postgres_database() as database:
        yield {
            "host": PG["host"],
            "port": PG["port"],
            "database": database,
            "username": PG["user"],
            "password": None,
        }


def require_mariadb() -> None:
    """Skip the calling test without MariaDB, or fail it when CI requires MariaDB."""
    reason = mariadb_unavailable_reason()
    if reason is not None:
        if MARIADB_REQUIRED:
            pytest.fail(f"AGENTFLOW_REQUIRE_MARIADB is set but {reason}")
        pytest.skip(reason)


def require_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(f"AGENTFLOW_REQUIRE_POSTGRES is set but {reason}")
        pytest.skip(reason)
