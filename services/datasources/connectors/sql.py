"""MySQL/MariaDB (aiomysql) and PostgreSQL (psycopg) connectors: read-only queries, pooled.

Where a connection goes: the host is resolved once and checked against the outbound policy
(`shared.net.resolve.checked_address`: public addresses, or networks the operator allowed in
`AGENTFLOW_OUTBOUND_ALLOW_NETWORKS`) before anything is sent, and the driver is handed that
checked address, not the name (the name is kept for TLS), so a DNS answer that changes between
the check and the connection (DNS rebinding) changes nothing. A refused host is one `refused`
error naming the host as written, the same whatever listens there: closed port, wrong password
and no server at all look alike. MySQL resolves when its pool is made (and again after a
connection to it failed); PostgreSQL resolves for every new connection.

Three lines keep a query from writing:
1. `sql_guard.admit` admits one read-only statement (judged on its parse tree);
2. the database runs it read-only and alone: MySQL inside `START TRANSACTION READ ONLY` ...
   `ROLLBACK`, with multi-statements switched off on the connection (aiomysql always asks for
   them); PostgreSQL in sessions with `default_transaction_read_only=on`, read-only
   transactions, and the extended query protocol (one statement per call);
3. the database user's privileges, which the operator should keep to SELECT.

Parameters (DB-API "pyformat", the same for both drivers): a dict fills `%(name)s`, a list
fills `%s` in order, and then a literal `%` is written `%%`. Without parameters (None) the
text is sent as it is. MySQL's driver splices the escaped values into the text, so the guard
refuses placeholders inside strings or comments; PostgreSQL sends them apart from the text.

Timeouts: the server cancels a statement after `statement_timeout_s` (MySQL
`MAX_EXECUTION_TIME`, MariaDB `max_statement_time`, PostgreSQL `statement_timeout`), and the
client gives up one second later, closing that connection rather than pooling it again.

Rows: at most `max_rows`, read from a server-side cursor (PostgreSQL) or an unbuffered one
(MySQL), so a large table is not loaded to find out it is large; one row more is read to know
whether the result was truncated. Values go through `encoding.json_safe`; MySQL JSON columns
are parsed, MariaDB's (text underneath) come back as strings.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import ssl
import struct
import uuid
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, Final, Literal

import aiomysql
import psycopg
import pymysql
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from pymysql.constants import COMMAND, FIELD_TYPE
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
from pymysql.converters import decoders as mysql_decoders

from services.datasources.configs import MySQLConfig, PostgresConfig, SqlConfig
from services.datasources.connectors.base import (
    AUTH_FAILED,
    BAD_PARAMETERS,
    CONNECT_TIMEOUT,
    CONNECTION_FAILED,
    DATABASE_ERROR,
    OBJECT_NOT_FOUND,
    PERMISSION_DENIED,
    POOL_BUSY,
    READ_ONLY,
    STATEMENT_TIMEOUT,
    SYNTAX_ERROR,
    UNKNOWN_DATABASE,
    UNKNOWN_HOST,
    UNREACHABLE,
    ConnectorError,
    ConnectorSettings,
    QueryResult,
    shown,
    unique_columns,
)
from services.datasources.connectors.encoding import json_safe
from services.datasources.sql_guard import Dialect, StatementKind, UnsafeQuery, admit
from shared.i18n import Language, Message
from shared.net.resolve import HostRefused, HostUnresolvable, checked_address

Parameters = dict[str, Any] | list[Any] | None

NO_BACKSLASH_ESCAPES = Message(
    "服务器启用了 NO_BACKSLASH_ESCAPES,查询中不能含反斜杠",
    "the server runs with NO_BACKSLASH_ESCAPES: a query may not contain a backslash",
)
_CLIENT_GRACE_S: Final = 1.0  # the client waits this much longer than the server's timeout
_MYSQL_OPTION_MULTI_STATEMENTS_OFF: Final = 1
# Never reads a file: libpq would otherwise take a password from the service's ~/.pgpass
# for whatever host a user names.
_NO_PASSFILE: Final = "/nonexistent/agentflow-datasources/pgpass"

# MySQL error codes -> (kind, message); messages take `detail`, `database`, `user`, ...
_MYSQL_AUTH: Final = frozenset({1045, 1698, 1251})
# 1044: access denied to the database; MySQL says so too when it does not exist.
_MYSQL_NO_DATABASE: Final = frozenset({1049, 1044})
_MYSQL_UNREACHABLE: Final = frozenset({2003, 2005, 2006, 2013})
_MYSQL_TIMEOUT: Final = frozenset({3024, 1969, 1317})
_MYSQL_NOT_FOUND: Final = frozenset({1146, 1305, 1109, 1630})
_MYSQL_BAD_QUERY: Final = frozenset(
    {1052, 1054, 1055, 1056, 1111, 1140, 1241, 1242, 1248, 1292, 1366, 1582, 1583, 3140, 3141}
)
_MYSQL_SYNTAX: Final = frozenset({1064, 1149})
_MYSQL_READ_ONLY: Final = frozenset({1792, 1290, 1207})
_MYSQL_DENIED: Final = frozenset({1142, 1143, 1227, 1370})


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _NamedTLSContext(ssl.SSLContext):
    """A client TLS context that verifies (and sends as SNI) a fixed host name, whatever name
    the driver passes: aiomysql connects to the checked address and would otherwise check the
    certificate against that address."""

    hostname: str

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.hostname, session)


def _tls_context(host: str) -> ssl.SSLContext:
    """Certificate and host name verification against `host`, the name the user gave."""
    if _is_address(host):
        return ssl.create_default_context()
    context = _NamedTLSContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificate and name
    context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.hostname = host
    return context


class _SqlConnector:
    """What both SQL connectors share: the guard, limits, row shaping and error wording."""

    dialect: Dialect

    def __init__(self, config: SqlConfig, settings: ConnectorSettings) -> None:
        self._config = config
        self._settings = settings
        self._connect_timeout = config.connect_timeout or settings.connect_timeout_s
        self._statement_timeout = settings.statement_timeout_s
        self._secrets = [config.password] if config.password else []

    def __repr__(self) -> str:
        c = self._config
        return f"{type(self).__name__}({c.username}@{c.host}:{c.port}/{c.database})"

    async def query(self, query: str, parameters: Parameters, *, max_rows: int) -> QueryResult:
        """One read-only statement, at most `max_rows` rows; ConnectorError if it fails."""
        if not isinstance(parameters, dict | list | type(None)):
            raise ConnectorError(
                "bad_query", BAD_PARAMETERS, detail="parameters must be an object or a list"
            )
        try:
            kind = admit(query, self.dialect, placeholders=parameters is not None)
        except UnsafeQuery as exc:
            raise ConnectorError("refused", exc.message, **exc.params) from exc
        return await self._execute_unchecked(
            query, parameters, max_rows=max(1, max_rows), kind=kind
        )

    async def _execute_unchecked(
        self,
        query: str,
        parameters: Parameters,
        *,
        max_rows: int,
        kind: StatementKind | None = None,
    ) -> QueryResult:
        """Run `query` read-only, without the guard: tests use it to prove the second line.

        `kind` is what the guard admitted (None: unknown, run it as a plain statement)."""
        raise NotImplementedError

    async def _address(self) -> str:
        """The address to connect to: the host resolved once and allowed by the outbound
        policy. ConnectorError `refused` (the same for every port and whatever listens there)
        or `unreachable` (the name does not resolve) otherwise."""
        host = self._config.host
        try:
            async with asyncio.timeout(self._connect_timeout):  # a DNS server may be slow
                address = await checked_address(host, self._settings.outbound)
        except HostRefused as exc:
            raise self._error("refused", exc.message, **exc.params) from None
        except HostUnresolvable:
            raise self._error("unreachable", UNKNOWN_HOST, host=host) from None
        except TimeoutError:
            raise self._unreachable("timed out") from None
        return str(address)

    def _error(self, kind: Any, message: Message, **params: Any) -> ConnectorError:
        """A ConnectorError whose texts have the secrets masked."""
        safe = {k: shown(v, self._secrets) if isinstance(v, str) else v for k, v in params.items()}
        return ConnectorError(kind, message, **safe)

    def _unreachable(self, detail: str) -> ConnectorError:
        """The host was allowed (and resolved): why connecting to it failed."""
        host, port = self._config.host, self._config.port
        lowered = detail.lower()
        if "timed out" in lowered or "timeout" in lowered:
            return self._error(
                "timeout", CONNECT_TIMEOUT, host=host, port=port, timeout=self._connect_timeout
            )
        if "refused" in lowered or "can't connect" in lowered:
            return self._error("unreachable", UNREACHABLE, host=host, port=port)
        return self._error("unreachable", CONNECTION_FAILED, host=host, port=port, detail=detail)

    def _statement_timeout_error(self) -> ConnectorError:
        return self._error("timeout", STATEMENT_TIMEOUT, timeout=self._statement_timeout)

    @staticmethod
    def _result(names: Sequence[str], rows: Sequence[Sequence[Any]], max_rows: int) -> QueryResult:
        columns = unique_columns(names)
        kept = [
            {column: json_safe(value) for column, value in zip(columns, row, strict=False)}
            for row in rows[:max_rows]
        ]
        return QueryResult(
            rows=kept, count=len(kept), truncated=len(rows) > max_rows, columns=columns
        )


# -- MySQL / MariaDB -----------------------------------------------------------------------


class MySQLConnector(_SqlConnector):
    """MySQL or MariaDB through an aiomysql pool (made on first use, `minsize` 0)."""

    dialect: Dialect = "mysql"

    def __init__(self, config: MySQLConfig, settings: ConnectorSettings) -> None:
        super().__init__(config, settings)
        self._mysql = config
        self._pool: aiomysql.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._ready: weakref.WeakSet[aiomysql.Connection] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()
        self._flavour: Literal["mysql", "mariadb"] | None = None
        self._no_backslash_escapes = False

    async def test(self, *, language: Language = "zh") -> str:
        """The server's name and version, e.g. "MariaDB 10.11.19"."""
        async with self._connection() as conn:
            try:
                async with asyncio.timeout(self._statement_timeout + _CLIENT_GRACE_S):
                    async with conn.cursor() as cursor:
                        await cursor.execute("SELECT VERSION()")
                        row = await cursor.fetchone()
            except TimeoutError:
                raise self._statement_timeout_error() from None
            except pymysql.err.MySQLError as exc:
                raise self._map(exc) from None
        version = str(row[0]) if row else ""
        name = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        return f"{name} {version.split('-')[0]}".strip()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _get_pool(self) -> aiomysql.Pool:
        async with self._pool_lock:
            if self._pool is None:
                config = self._mysql
                address = await self._address()
                conv = dict(mysql_decoders)
                conv[FIELD_TYPE.JSON] = json.loads
                self._pool = await aiomysql.create_pool(
                    minsize=0,
                    maxsize=self._settings.pool_max_size,
                    pool_recycle=300,
                    host=address,  # the checked address; the name is kept for TLS
                    port=config.port,
                    user=config.username,
                    password=config.password or "",
                    db=config.database,
                    charset=config.charset,
                    connect_timeout=self._connect_timeout,
                    autocommit=True,
                    ssl=_tls_context(config.host) if config.ssl else None,
                    conv=conv,
                    local_infile=False,
                    program_name="agentflow-datasources",
                )
            return self._pool

    def _forget_pool(self, pool: aiomysql.Pool) -> None:
        """After a failure to connect: the next use makes a new pool, resolving the host again
        (its address may have moved). The old pool closes as its connections come back."""
        if self._pool is pool:
            self._pool = None
        pool.close()
        task = asyncio.get_running_loop().create_task(pool.wait_closed())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiomysql.Connection]:
        """A pooled connection set up for read-only use; closed instead of pooled if broken."""
        pool = await self._get_pool()
        try:
            async with asyncio.timeout(self._connect_timeout + _CLIENT_GRACE_S):
                conn = await pool.acquire()
        except TimeoutError:
            if pool.size >= pool.maxsize and pool.freesize == 0:
                raise self._error("timeout", POOL_BUSY, timeout=self._connect_timeout) from None
            self._forget_pool(pool)
            raise self._unreachable("timed out") from None
        except pymysql.err.MySQLError as exc:
            error = self._map(exc)
            if error.kind in ("unreachable", "timeout"):
                self._forget_pool(pool)
            raise error from None
        except OSError as exc:
            self._forget_pool(pool)
            raise self._unreachable(str(exc)) from None
        try:
            if conn not in self._ready:
                try:
                    async with asyncio.timeout(self._connect_timeout + _CLIENT_GRACE_S):
                        await self._set_up(conn)
                except TimeoutError:
                    raise self._unreachable("timed out") from None
                except pymysql.err.MySQLError as exc:
                    raise self._map(exc) from None
                self._ready.add(conn)
            yield conn
        except BaseException as exc:
            # A server's error leaves the connection usable; anything else may not have.
            if not isinstance(exc, ConnectorError) or exc.kind in ("timeout", "unreachable"):
                conn.close()
            raise
        finally:
            await pool.release(conn)

    async def _set_up(self, conn: aiomysql.Connection) -> None:
        """Once per connection: one statement per call, the server-side statement timeout."""
        # COM_SET_OPTION(MYSQL_OPTION_MULTI_STATEMENTS_OFF): aiomysql always asks for
        # multi-statements when connecting; this takes them back. The server answers EOF.
        await conn._execute_command(
            COMMAND.COM_SET_OPTION, struct.pack("<H", _MYSQL_OPTION_MULTI_STATEMENTS_OFF)
        )
        await conn._read_packet()
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT VERSION()")
            row = await cursor.fetchone()
            version = str(row[0]) if row else ""
            self._flavour = "mariadb" if "mariadb" in version.lower() else "mysql"
            # The guard reads strings the usual way, where a backslash escapes a quote.
            status = conn.server_status or 0
            self._no_backslash_escapes = bool(status & SERVER_STATUS_NO_BACKSLASH_ESCAPES)
            if self._flavour == "mariadb":
                seconds = f"{self._statement_timeout:.3f}"
                await cursor.execute(f"SET SESSION max_statement_time = {seconds}")
            else:
                milliseconds = max(1, math.ceil(self._statement_timeout * 1000))
                await cursor.execute(f"SET SESSION MAX_EXECUTION_TIME = {milliseconds}")

    async def _execute_unchecked(
        self,
        query: str,
        parameters: Parameters,
        *,
        max_rows: int,
        kind: StatementKind | None = None,
    ) -> QueryResult:
        """Run `query` in a read-only transaction, without the guard.

        The rows come from an unbuffered cursor: when there are more than `max_rows`, the rest
        is not read and that connection is closed instead of going back to the pool."""
        async with self._connection() as conn:
            if kind is not None and self._no_backslash_escapes and "\\" in query:
                raise self._error("refused", NO_BACKSLASH_ESCAPES)
            cursor = await conn.cursor(aiomysql.SSCursor)
            try:
                # The driver splices the parameters into the text: done first, so that a
                # mistake in them is told apart from the server's errors.
                text = query if parameters is None else cursor.mogrify(query, parameters)
            except KeyError as exc:
                detail = f"missing parameter {exc.args[0]}"
                raise self._error("bad_query", BAD_PARAMETERS, detail=detail) from None
            except (TypeError, ValueError) as exc:
                raise self._error("bad_query", BAD_PARAMETERS, detail=str(exc)) from None
            try:
                async with asyncio.timeout(self._statement_timeout + _CLIENT_GRACE_S):
                    async with conn.cursor() as plain:
                        await plain.execute("START TRANSACTION READ ONLY")
                    await cursor.execute(text)
                    names = [d[0] for d in cursor.description or ()]
                    rows = list(await cursor.fetchmany(max_rows + 1)) if names else []
                    if len(rows) > max_rows:
                        conn.close()  # unread rows remain: not worth draining
                    else:
                        await cursor.close()
                        async with conn.cursor() as plain:
                            await plain.execute("ROLLBACK")
            except TimeoutError:
                conn.close()
                raise self._statement_timeout_error() from None
            except pymysql.err.MySQLError as exc:
                with suppress(Exception):
                    async with asyncio.timeout(self._connect_timeout):
                        async with conn.cursor() as plain:
                            await plain.execute("ROLLBACK")
                raise self._map(exc) from None
        return self._result(names, rows, max_rows)

    def _map(self, exc: pymysql.err.MySQLError) -> ConnectorError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        detail = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        config = self._mysql
        if code in _MYSQL_AUTH:
            return self._error("auth", AUTH_FAILED, user=config.username)
        if code in _MYSQL_UNREACHABLE:
            return self._unreachable(detail)
        if code in _MYSQL_NO_DATABASE:
            return self._error("not_found", UNKNOWN_DATABASE, database=config.database)
        if code in _MYSQL_TIMEOUT:
            return self._statement_timeout_error()
        if code in _MYSQL_NOT_FOUND:
            return self._error("not_found", OBJECT_NOT_FOUND, detail=detail)
        if code in _MYSQL_SYNTAX:
            return self._error("bad_query", SYNTAX_ERROR, detail=detail)
        if code in _MYSQL_READ_ONLY:
            return self._error("refused", READ_ONLY, detail=detail)
        if code in _MYSQL_DENIED:
            return self._error("refused", PERMISSION_DENIED, detail=detail)
        if code in _MYSQL_BAD_QUERY or isinstance(
            exc, pymysql.err.ProgrammingError | pymysql.err.DataError
        ):
            return self._error("bad_query", DATABASE_ERROR, detail=detail)
        return self._error("failed", DATABASE_ERROR, detail=detail)


# -- PostgreSQL ----------------------------------------------------------------------------


class PostgresConnector(_SqlConnector):
    """PostgreSQL through a psycopg_pool.AsyncConnectionPool (opened on first use, min_size 0).

    The pool retries a failing connection in the background and its waiting clients only see
    a timeout; so a direct connection is tried first (and after a pool timeout) to say why."""

    dialect: Dialect = "postgres"

    def __init__(self, config: PostgresConfig, settings: ConnectorSettings) -> None:
        super().__init__(config, settings)
        self._pg = config
        self._pool: AsyncConnectionPool | None = None
        self._pool_lock = asyncio.Lock()
        self._verified = False

    async def _kwargs(self) -> dict[str, Any]:
        """Connection parameters, for one connection: the host resolved and checked now."""
        config = self._pg
        milliseconds = max(1, math.ceil(self._statement_timeout * 1000))
        kwargs: dict[str, Any] = {
            # libpq connects to hostaddr and keeps host for TLS (SNI) and its messages.
            "host": config.host,
            "hostaddr": await self._address(),
            "port": config.port,
            "dbname": config.database,
            "user": config.username,
            "sslmode": config.sslmode,
            # libpq counts whole seconds, and at least 2.
            "connect_timeout": max(2, math.ceil(self._connect_timeout)),
            "application_name": "agentflow-datasources",
            "passfile": _NO_PASSFILE,
            # standard_conforming_strings: a backslash in '...' is a plain character, as the
            # guard reads it.
            "options": (
                "-c default_transaction_read_only=on -c standard_conforming_strings=on "
                f"-c statement_timeout={milliseconds}"
            ),
        }
        if config.password:
            kwargs["password"] = config.password
        return kwargs

    async def test(self, *, language: Language = "zh") -> str:
        """The server's name and version, e.g. "PostgreSQL 15.20"."""
        version = await self._diagnose(ask_version=True)
        return " ".join(version.split()[:2])

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _diagnose(self, *, ask_version: bool = False) -> str:
        """Connect directly (no pool): ConnectorError saying why that fails; the version."""
        kwargs = await self._kwargs()
        try:
            async with asyncio.timeout(self._connect_timeout + _CLIENT_GRACE_S):
                conn = await psycopg.AsyncConnection.connect(**kwargs)
        except TimeoutError:
            raise self._unreachable("timed out") from None
        except psycopg.Error as exc:
            raise self._map_connect(exc) from None
        try:
            version = ""
            if ask_version:
                async with asyncio.timeout(self._statement_timeout + _CLIENT_GRACE_S):
                    cursor = await conn.execute("SELECT version()")
                    row = await cursor.fetchone()
                    version = str(row[0]) if row else ""
        except TimeoutError:
            raise self._statement_timeout_error() from None
        except psycopg.Error as exc:
            raise self._map(exc) from None
        finally:
            with suppress(Exception):
                await conn.close()
        self._verified = True
        return version

    async def _get_pool(self) -> AsyncConnectionPool:
        async with self._pool_lock:
            if self._pool is None:
                pool = AsyncConnectionPool(
                    kwargs=self._kwargs,  # called for every new connection
                    min_size=0,
                    max_size=self._settings.pool_max_size,
                    open=False,
                    configure=self._configure,
                    check=AsyncConnectionPool.check_connection,
                    timeout=self._connect_timeout + _CLIENT_GRACE_S,
                    max_idle=300,
                    name=f"datasource-{self._pg.host}-{self._pg.database}",
                )
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_read_only(True)  # BEGIN READ ONLY, besides the session default

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if not self._verified:
            await self._diagnose()
        pool = await self._get_pool()
        try:
            async with pool.connection() as conn:
                yield conn
        except PoolTimeout:
            self._verified = False
            await self._diagnose()
            raise self._error("timeout", POOL_BUSY, timeout=self._connect_timeout) from None

    async def _execute_unchecked(
        self,
        query: str,
        parameters: Parameters,
        *,
        max_rows: int,
        kind: StatementKind | None = None,
    ) -> QueryResult:
        """Run `query` in a read-only transaction, without the guard.

        Queries read through a server-side cursor (`DECLARE ... CURSOR FOR`, which takes only
        SELECT/VALUES); SHOW, EXPLAIN and unknown kinds run prepared, which keeps them to one
        statement."""
        async with self._connection() as conn:
            try:
                async with asyncio.timeout(self._statement_timeout + _CLIENT_GRACE_S):
                    if kind == "select":
                        name = f"agentflow_{uuid.uuid4().hex[:16]}"
                        async with conn.cursor(name=name) as server_cursor:
                            await server_cursor.execute(query, parameters)
                            names = [d.name for d in server_cursor.description or ()]
                            rows = list(await server_cursor.fetchmany(max_rows + 1))
                    else:
                        cursor = conn.cursor()
                        await cursor.execute(query, parameters, prepare=True)
                        names = [d.name for d in cursor.description or ()]
                        rows = list(await cursor.fetchmany(max_rows + 1)) if names else []
            except TimeoutError:
                raise self._statement_timeout_error() from None
            except psycopg.Error as exc:
                raise self._map(exc) from None
            except KeyError as exc:
                raise self._error(
                    "bad_query", BAD_PARAMETERS, detail=f"missing parameter {exc.args[0]}"
                ) from None
            except (TypeError, ValueError) as exc:
                raise self._error("bad_query", BAD_PARAMETERS, detail=str(exc)) from None
            finally:
                with suppress(Exception):
                    async with asyncio.timeout(self._connect_timeout):
                        await conn.rollback()
        return self._result(names, rows, max_rows)

    def _map_connect(self, exc: psycopg.Error) -> ConnectorError:
        """Connection failures carry no SQLSTATE: libpq's text says what went wrong."""
        text = str(exc)
        lowered = text.lower()
        config = self._pg
        if (
            "password authentication failed" in lowered
            or ("role" in lowered and "does not exist" in lowered)
            or "no pg_hba.conf entry" in lowered
            or ("password" in lowered and "supplied" in lowered)
        ):
            return self._error("auth", AUTH_FAILED, user=config.username)
        if "database" in lowered and "does not exist" in lowered:
            return self._error("not_found", UNKNOWN_DATABASE, database=config.database)
        if exc.sqlstate is not None:
            return self._map(exc)
        return self._unreachable(text)

    def _map(self, exc: psycopg.Error) -> ConnectorError:
        state = exc.sqlstate or ""
        if not state and isinstance(exc, psycopg.ProgrammingError):
            return self._error("bad_query", BAD_PARAMETERS, detail=str(exc))
        detail = (exc.diag.message_primary if exc.sqlstate else None) or str(exc)
        config = self._pg
        if state.startswith("28"):
            return self._error("auth", AUTH_FAILED, user=config.username)
        if state == "3D000":
            return self._error("not_found", UNKNOWN_DATABASE, database=config.database)
        if state == "57014":
            return self._statement_timeout_error()
        if state in ("42P01", "42883", "42704", "3F000"):
            return self._error("not_found", OBJECT_NOT_FOUND, detail=detail)
        if state == "42601":
            return self._error("bad_query", SYNTAX_ERROR, detail=detail)
        if state == "25006":
            return self._error("refused", READ_ONLY, detail=detail)
        if state == "42501":
            return self._error("refused", PERMISSION_DENIED, detail=detail)
        if state.startswith("08") or state.startswith("57P"):
            return self._error(
                "unreachable", CONNECTION_FAILED, host=config.host, port=config.port, detail=detail
            )
        if state.startswith(("42", "22", "21")) or isinstance(exc, psycopg.ProgrammingError):
            return self._error("bad_query", DATABASE_ERROR, detail=detail)
        return self._error("failed", DATABASE_ERROR, detail=detail)
