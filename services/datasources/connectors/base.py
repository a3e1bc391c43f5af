"""What every connector shares: settings, results, errors, and the pool of live connectors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel

from services.datasources.configs import MASK
from services.datasources.connectors.encoding import json_safe
from shared.i18n import Language, LocalizedError, Message
from shared.net.outbound import OutboundPolicy
from shared.text import shortened

logger = logging.getLogger(__name__)

ErrorKind = Literal["auth", "unreachable", "timeout", "not_found", "refused", "bad_query", "failed"]
_SHOWN_CHARS: Final = 300


@dataclass(frozen=True)
class ConnectorSettings:
    connect_timeout_s: float = 5.0  # when the source's config does not say
    statement_timeout_s: float = 30.0  # SQL statements; the server cancels them after this
    max_rows: int = 1000  # the most rows a query returns
    pool_max_size: int = 5  # connections per SQL data source
    # Which addresses api and SQL sources may reach (and the resolver that names them); SQL
    # drivers are handed the checked address.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    json_dir: Path = Path(".data/json")  # json sources' files: <json_dir>/<owner id>/<file>
    max_response_chars: int = 5_000_000  # the largest API response read


@dataclass(frozen=True)
class QueryResult:
    rows: list[dict[str, Any]]  # JSON-safe values only (see encoding)
    count: int  # len(rows)
    truncated: bool  # more rows existed than the limit
    columns: list[str]


class ConnectorError(LocalizedError):
    """A data source could not answer; `kind` says why, the message (never a secret) how.

    Kinds: auth (credentials refused), unreachable (no such host, nobody listening), timeout
    (connecting or the statement took too long), not_found (database, table, file, URL),
    refused (unsafe query, or a host the outbound policy forbids: then nothing was sent, and
    the answer is the same whatever listens there), bad_query (the query or its parameters
    are wrong), failed (anything else)."""

    def __init__(self, kind: ErrorKind, message: Message, **params: Any) -> None:
        super().__init__(message, **params)
        self.kind: ErrorKind = kind

    def __repr__(self) -> str:
        return f"ConnectorError({self.kind!r}, {str(self)!r})"


# -- messages shared by the connectors -----------------------------------------------------

AUTH_FAILED = Message(
    "用户名或密码错误({user})", "the database refused the user name or password ({user})"
)
UNKNOWN_HOST = Message("找不到主机 {host}", "cannot find the host {host}")
UNREACHABLE = Message(
    "无法连接 {host}:{port}(没有服务在监听或网络不通)",
    "cannot connect to {host}:{port} (nothing listens there, or the network is down)",
)
CONNECT_TIMEOUT = Message(
    "连接 {host}:{port} 超时({timeout:g} 秒)",
    "connecting to {host}:{port} timed out after {timeout:g} s",
)
STATEMENT_TIMEOUT = Message(
    "查询超过 {timeout:g} 秒,已取消", "the query ran longer than {timeout:g} s and was cancelled"
)
POOL_BUSY = Message(
    "数据源的连接都在使用中,{timeout:g} 秒内没有空闲连接",
    "every connection to the data source stayed busy for {timeout:g} s",
)
UNKNOWN_DATABASE = Message(
    "数据库 {database} 不存在(或该用户无权使用)",
    "the database {database} does not exist (or the user may not use it)",
)
OBJECT_NOT_FOUND = Message("表或对象不存在:{detail}", "table or object not found: {detail}")
SYNTAX_ERROR = Message("SQL 语法错误:{detail}", "SQL syntax error: {detail}")
BAD_PARAMETERS = Message("查询参数有误:{detail}", "the query parameters are wrong: {detail}")
READ_ONLY = Message("数据源只读,不能修改数据:{detail}", "the data source is read-only: {detail}")
PERMISSION_DENIED = Message("没有权限:{detail}", "permission denied: {detail}")
DATABASE_ERROR = Message("数据库错误:{detail}", "database error: {detail}")
CONNECTION_FAILED = Message(
    "连接 {host}:{port} 失败:{detail}", "connecting to {host}:{port} failed: {detail}"
)


def shown(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` fit to show people: secrets masked, at most a few hundred characters."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = " ".join(text.split())
    return shortened(text, _SHOWN_CHARS)


def unique_columns(names: Iterable[str]) -> list[str]:
    """Column names made unique: a repeated `a` becomes `a_2`, `a_3`, ... (never taken ones)."""
    names = list(names)
    taken = set(names)
    seen: set[str] = set()
    result: list[str] = []
    for name in names:
        if name not in seen:
            seen.add(name)
            result.append(name)
            continue
        suffix = 2
        while f"{name}_{suffix}" in taken or f"{name}_{suffix}" in seen:
            suffix += 1
        candidate = f"{name}_{suffix}"
        seen.add(candidate)
        result.append(candidate)
    return result


def rows_from_json(document: Any, max_rows: int) -> QueryResult:
    """Rows from JSON: a list of objects is the rows, a scalar `x` (alone or in a list) becomes
    `{"value": x}`, an object is one row, null (nothing selected) is no row."""
    if document is None:
        items: list[Any] = []
    elif isinstance(document, list):
        items = document
    else:
        items = [document]
    truncated = len(items) > max_rows
    rows = [
        json_safe(item) if isinstance(item, dict) else {"value": json_safe(item)}
        for item in items[:max_rows]
    ]
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return QueryResult(rows=rows, count=len(rows), truncated=truncated, columns=list(columns))


class Connector(Protocol):
    async def test(self, *, language: Language = "zh") -> str:
        """What was reached, e.g. "MariaDB 10.11.19", "HTTP 200"; ConnectorError if nothing."""
        ...

    async def query(
        self, query: str, parameters: dict[str, Any] | list[Any] | None, *, max_rows: int
    ) -> QueryResult:
        """One read-only query; at most `max_rows` rows. ConnectorError if it fails."""
        ...

    async def close(self) -> None: ...


def build_connector(
    source_type: str,
    config: BaseModel,
    settings: ConnectorSettings,
    *,
    owner_id: Hashable | None = None,
) -> Connector:
    """A connector for a validated config (with its secrets); connections open on first use.

    `owner_id`: the source's owner, required for json sources, whose files are read from the
    owner's own directory `<json_dir>/<owner_id>/`."""
    from services.datasources.configs import ApiConfig, JsonConfig, MySQLConfig, PostgresConfig
    from services.datasources.connectors.http_api import ApiConnector
    from services.datasources.connectors.json_doc import JsonConnector
    from services.datasources.connectors.sql import MySQLConnector, PostgresConnector

    if source_type == "mysql" and isinstance(config, MySQLConfig):
        return MySQLConnector(config, settings)
    if source_type == "postgresql" and isinstance(config, PostgresConfig):
        return PostgresConnector(config, settings)
    if source_type == "api" and isinstance(config, ApiConfig):
        return ApiConnector(config, settings)
    if source_type == "json" and isinstance(config, JsonConfig):
        if owner_id is None:
            raise TypeError("a json source's connector needs its owner's id")
        return JsonConnector(config, settings, settings.json_dir / str(owner_id))
    raise TypeError(f"no connector for {source_type!r} with a {type(config).__name__}")


class ConnectorPool:
    """Keeps one connector (with its connection pool) per data source id and config version.

    `get` returns the source's connector, building it when there is none or the stored one is
    of an older config version; a replaced connector is closed in the background once the
    queries running on it are done. `drop` (or `drop_soon`, from any thread) forgets a deleted
    source's connector; `close` closes them all (at shutdown).
    """

    def __init__(self, settings: ConnectorSettings) -> None:
        self.settings = settings
        self._entries: dict[Hashable, tuple[int, Connector]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def get(
        self,
        source_id: Hashable,
        version: int,
        source_type: str,
        config: BaseModel,
        *,
        owner_id: Hashable,
    ) -> Connector:
        if self._closed:
            raise RuntimeError("the connector pool is closed")
        self._loop = asyncio.get_running_loop()
        entry = self._entries.get(source_id)
        if entry is not None and entry[0] >= version:
            # An older version asked for late (a concurrent update) gets the newer connector.
            return entry[1]
        connector = build_connector(source_type, config, self.settings, owner_id=owner_id)
        self._entries[source_id] = (version, connector)
        if entry is not None:
            self._close_later(entry[1])
        return connector

    async def drop(self, source_id: Hashable) -> None:
        entry = self._entries.pop(source_id, None)
        if entry is not None:
            await self._close_quietly(entry[1])

    def drop_soon(self, source_id: Hashable) -> None:
        """`drop` from synchronous code, on any thread: scheduled on the pool's event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # no connector was ever made
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._forget(source_id)
        else:
            loop.call_soon_threadsafe(self._forget, source_id)

    async def close(self) -> None:
        self._closed = True
        entries, self._entries = list(self._entries.values()), {}
        for _, connector in entries:
            await self._close_quietly(connector)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, source_id: Hashable) -> None:
        entry = self._entries.pop(source_id, None)
        if entry is not None:
            self._close_later(entry[1])

    def _close_later(self, connector: Connector) -> None:
        task = asyncio.get_running_loop().create_task(self._close_quietly(connector))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_quietly(connector: Connector) -> None:
        try:
            await connector.close()
        except Exception:
            logger.warning("closing a data source connector failed", exc_info=True)
