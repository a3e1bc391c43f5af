"""The `api` connector: one HTTP request per query, through the outbound guard, JSON back.

A query is a path (with its own query string if it likes) appended to `base_url`; empty means
`base_url` itself. `{name}` templates in that path, in `query_params` values and in `body`
strings are filled from the query's parameters (an object): in the path a value is
percent-encoded whole (a `/` in it cannot climb the path); a body string that is exactly
`"{name}"` becomes the parameter's value itself (number, object, ...). A missing parameter
is a `bad_query` naming it. The path may not be an absolute URL nor hold `.`/`..` segments:
`base_url` bounds what a query can reach.

Every request goes through `shared.net.outbound.guarded_request`: public addresses only (or
networks the operator allowed), redirects checked hop by hop, the response read up to
`max_response_chars`. Non-2xx answers and non-JSON bodies are errors that say the status.

Rows: `response_path` (JMESPath) picks the data; a list of objects is the rows, scalars
become `{"value": x}`, an object is one row, nothing selected (null) is no row.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import jmespath
from jmespath.exceptions import JMESPathError

from services.datasources.configs import ApiConfig, ApiKeyAuth, BasicAuth, BearerAuth
from services.datasources.connectors.base import (
    ConnectorError,
    ConnectorSettings,
    QueryResult,
    rows_from_json,
    shown,
)
from shared.i18n import Language, Message
from shared.net.outbound import (
    _UNRESOLVABLE,
    OutboundFailed,
    OutboundRefused,
    guarded_request,
)

_TEMPLATE: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ABSOLUTE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WITH_BODY: Final = frozenset({"POST", "PUT", "PATCH"})

MISSING_PARAMETER = Message("缺少参数 {name}", "the parameter {name} is missing")
PARAMETERS_NOT_OBJECT = Message(
    "API 数据源的参数必须是对象(按名称填入 {name} 模板)",
    "an api data source takes its parameters as an object (they fill {name} templates)",
)
BAD_PATH = Message(
    "查询必须是相对于基础地址的路径(不能是完整地址,也不能含 . 或 .. 段):{path}",
    "the query must be a path under the base URL (no full URL, no . or .. segments): {path}",
)
HTTP_STATUS = Message("接口返回 HTTP {status}:{body}", "the API answered HTTP {status}: {body}")
NOT_JSON = Message(
    "接口返回的不是 JSON(HTTP {status},{content_type})",
    "the API did not answer JSON (HTTP {status}, {content_type})",
)
TOO_LARGE = Message(
    "接口返回的内容超过 {limit} 个字符", "the API's answer is longer than {limit} characters"
)
BAD_RESPONSE_PATH = Message(
    "response_path 无法应用于返回的数据:{detail}",
    "the response_path cannot be applied to the answer: {detail}",
)


def _text(value: Any) -> str:
    """A parameter as it appears inside a string."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return json.dumps(value, ensure_ascii=False)


class ApiConnector:
    """An HTTP JSON API, one `httpx.AsyncClient` per connector (no proxies from the env)."""

    def __init__(self, config: ApiConfig, settings: ConnectorSettings) -> None:
        self._config = config
        self._settings = settings
        self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        auth = config.auth
        secret = (
            auth.token
            if isinstance(auth, BearerAuth)
            else auth.password
            if isinstance(auth, BasicAuth)
            else auth.value
            if isinstance(auth, ApiKeyAuth)
            else None
        )
        self._secrets = [secret] if secret else []
        if isinstance(auth, BasicAuth) and auth.password:
            pair = f"{auth.username}:{auth.password}".encode()
            self._secrets.append(base64.b64encode(pair).decode("ascii"))

    def __repr__(self) -> str:
        return f"ApiConnector({self._config.method} {self._config.base_url})"

    async def test(self, *, language: Language = "zh") -> str:
        """Requests `base_url` (missing template values left empty); e.g. "HTTP 200"."""
        status, _ = await self._request("", {}, lenient=True)
        return f"HTTP {status}"

    async def query(
        self, query: str, parameters: dict[str, Any] | list[Any] | None, *, max_rows: int
    ) -> QueryResult:
        if isinstance(parameters, list):
            raise ConnectorError("bad_query", PARAMETERS_NOT_OBJECT)
        _, document = await self._request(query, parameters or {}, lenient=False)
        if self._config.response_path:
            try:
                document = jmespath.search(self._config.response_path, document)
            except JMESPathError as exc:
                raise self._error("bad_query", BAD_RESPONSE_PATH, detail=str(exc)) from None
        return rows_from_json(document, max(1, max_rows))

    async def close(self) -> None:
        await self._http.aclose()

    # -- the request -----------------------------------------------------------------------

    def _error(self, kind: Any, message: Message, **params: Any) -> ConnectorError:
        safe = {k: shown(v, self._secrets) if isinstance(v, str) else v for k, v in params.items()}
        return ConnectorError(kind, message, **safe)

    def _fill(self, text: str, parameters: dict[str, Any], *, lenient: bool, encode: bool) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in parameters:
                if lenient:
                    return ""
                raise ConnectorError("bad_query", MISSING_PARAMETER, name=name)
            value = _text(parameters[name])
            return quote(value, safe="") if encode else value

        return _TEMPLATE.sub(replace, text)

    def _fill_body(self, body: Any, parameters: dict[str, Any], *, lenient: bool) -> Any:
        if isinstance(body, str):
            whole = _TEMPLATE.fullmatch(body)
            if whole is not None and whole.group(1) in parameters:
                return parameters[whole.group(1)]
            return self._fill(body, parameters, lenient=lenient, encode=False)
        if isinstance(body, list):
            return [self._fill_body(item, parameters, lenient=lenient) for item in body]
        if isinstance(body, dict):
            return {
                key: self._fill_body(value, parameters, lenient=lenient)
                for key, value in body.items()
            }
        return body

    def _url(self, path: str, parameters: dict[str, Any], *, lenient: bool) -> str:
        path = path.strip()
        if not path:
            return self._config.base_url
        if _ABSOLUTE.match(path) or path.startswith("//") or "#" in path:
            raise self._error("refused", BAD_PATH, path=path)
        filled = self._fill(path, parameters, lenient=lenient, encode=True)
        extra_path, _, extra_query = filled.partition("?")
        segments = [unquote(segment) for segment in extra_path.split("/")]
        if any(segment in (".", "..") or "\\" in segment for segment in segments):
            raise self._error("refused", BAD_PATH, path=path)
        base = urlsplit(self._config.base_url)
        joined = base.path.rstrip("/") + "/" + extra_path.lstrip("/")
        query = "&".join(part for part in (base.query, extra_query) if part)
        return urlunsplit((base.scheme, base.netloc, joined, query, ""))

    async def _request(
        self, path: str, parameters: dict[str, Any], *, lenient: bool
    ) -> tuple[int, Any]:
        config = self._config
        url = self._url(path, parameters, lenient=lenient)
        params = {
            name: self._fill(value, parameters, lenient=lenient, encode=False)
            for name, value in config.query_params.items()
        }
        headers = {"accept": "application/json", **config.headers}
        auth = config.auth
        if isinstance(auth, BearerAuth) and auth.token:
            headers["authorization"] = f"Bearer {auth.token}"
        elif isinstance(auth, BasicAuth):
            pair = f"{auth.username}:{auth.password or ''}".encode()
            headers["authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif isinstance(auth, ApiKeyAuth) and auth.value:
            if auth.location == "header":
                headers[auth.name] = auth.value
            else:
                params[auth.name] = auth.value
        body = None
        if config.method in _WITH_BODY and config.body is not None:
            body = self._fill_body(config.body, parameters, lenient=lenient)
        try:
            response = await guarded_request(
                self._http,
                config.method,
                url,
                policy=self._settings.outbound,
                headers=headers,
                params=params or None,
                json_body=body,
                timeout=config.timeout,
                max_chars=self._settings.max_response_chars,
            )
        except OutboundRefused as exc:
            kind = "unreachable" if exc.message is _UNRESOLVABLE else "refused"
            raise self._error(kind, exc.message, **exc.params) from None
        except OutboundFailed as exc:
            timed_out = isinstance(exc.__cause__, TimeoutError | httpx.TimeoutException)
            raise self._error(
                "timeout" if timed_out else "unreachable", exc.message, **exc.params
            ) from None
        status = response.status_code
        if response.truncated:
            raise self._error("failed", TOO_LARGE, limit=self._settings.max_response_chars)
        if not 200 <= status < 300:
            raise self._error(_status_kind(status), HTTP_STATUS, status=status, body=response.text)
        if not response.text.strip():
            return status, None
        try:
            return status, json.loads(response.text)
        except ValueError:
            content_type = response.headers.get("content-type") or "no content type"
            raise self._error(
                "failed", NOT_JSON, status=status, content_type=content_type
            ) from None


def _status_kind(status: int) -> str:
    if status in (401, 403, 407):
        return "auth"
    if status in (404, 410):
        return "not_found"
    if status in (408, 504):
        return "timeout"
    if 400 <= status < 500 and status != 429:
        return "bad_query"
    return "failed"
