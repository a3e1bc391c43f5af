"""The `json` connector: a JSON document, inline or a file, queried with JMESPath.

A file is named relative to its owner's directory, `<json_dir>/<owner id>/`
(`ConnectorSettings.json_dir`): one user cannot name another user's files. The path is
resolved (symbolic links followed) and refused unless it stays inside that directory, whatever
the config validation already checked. The file is read again for every query (it
may change), at most `max_response_chars` bytes of it.

A query is a JMESPath expression (empty: the whole document); parameters are not used. Rows
are shaped as for the api connector: a list of objects is the rows, scalars become
`{"value": x}`, an object is one row, nothing selected (null) is no row.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError

from services.datasources.configs import JsonConfig
from services.datasources.connectors.base import (
    ConnectorError,
    ConnectorSettings,
    QueryResult,
    rows_from_json,
    shown,
)
from shared.i18n import Language, Message

FILE_NOT_FOUND = Message("JSON 文件不存在:{file}", "the JSON file does not exist: {file}")
FILE_OUTSIDE = Message(
    "JSON 文件必须位于你自己的数据目录内:{file}",
    "the JSON file must be inside your own data directory: {file}",
)
FILE_UNREADABLE = Message(
    "无法读取 JSON 文件 {file}:{detail}", "cannot read the JSON file {file}: {detail}"
)
FILE_TOO_LARGE = Message(
    "JSON 文件超过 {limit} 字节:{file}", "the JSON file is larger than {limit} bytes: {file}"
)
INVALID_JSON = Message("JSON 无效:{detail}", "invalid JSON: {detail}")
BAD_EXPRESSION = Message("JMESPath 表达式无效:{detail}", "invalid JMESPath expression: {detail}")
SUMMARY_ARRAY = Message("JSON 数组,共 {count} 项", "JSON array with {count} items")
SUMMARY_OBJECT = Message("JSON 对象,共 {count} 个键", "JSON object with {count} keys")
SUMMARY_SCALAR = Message("JSON 值({kind})", "JSON value ({kind})")


class JsonConnector:
    def __init__(self, config: JsonConfig, settings: ConnectorSettings, directory: Path) -> None:
        """`directory`: the owner's own, where `config.file` is looked for."""
        self._config = config
        self._settings = settings
        self._directory = directory

    def __repr__(self) -> str:
        source = f"file={self._config.file!r}" if self._config.file else "inline"
        return f"JsonConnector({source})"

    async def test(self, *, language: Language = "zh") -> str:
        """How many top-level items or keys the document has."""
        document = await self._document()
        if isinstance(document, list):
            return SUMMARY_ARRAY.render(language, count=len(document))
        if isinstance(document, dict):
            return SUMMARY_OBJECT.render(language, count=len(document))
        kind = "null" if document is None else type(document).__name__
        return SUMMARY_SCALAR.render(language, kind=kind)

    async def query(
        self, query: str, parameters: dict[str, Any] | list[Any] | None, *, max_rows: int
    ) -> QueryResult:
        """`query` is JMESPath over the document (empty: all of it); parameters are unused."""
        document = await self._document()
        expression = query.strip()
        if expression:
            try:
                document = jmespath.search(expression, document)
            except JMESPathError as exc:
                raise ConnectorError("bad_query", BAD_EXPRESSION, detail=shown(str(exc))) from None
        return rows_from_json(document, max(1, max_rows))

    async def close(self) -> None:
        return None

    def _path(self, file: str) -> Path:
        root = self._directory.resolve()
        candidate = (root / file).resolve()
        if candidate == root or not candidate.is_relative_to(root):
            raise ConnectorError("refused", FILE_OUTSIDE, file=shown(file))
        return candidate

    async def _document(self) -> Any:
        file = self._config.file
        if file is None:
            return self._config.data
        path = self._path(file)
        limit = self._settings.max_response_chars
        try:
            data = await asyncio.to_thread(_read, path, limit)
        except FileNotFoundError:
            raise ConnectorError("not_found", FILE_NOT_FOUND, file=shown(file)) from None
        except IsADirectoryError:
            raise ConnectorError("not_found", FILE_NOT_FOUND, file=shown(file)) from None
        except OSError as exc:
            raise ConnectorError(
                "failed", FILE_UNREADABLE, file=shown(file), detail=shown(exc.strerror or "")
            ) from None
        if data is None:
            raise ConnectorError("failed", FILE_TOO_LARGE, file=shown(file), limit=limit)
        try:
            return json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConnectorError("bad_query", INVALID_JSON, detail=shown(str(exc))) from None


def _read(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None if it has more than `limit`."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    return None if len(data) > limit else data
