"""Refuse JSON bodies that Python's parser accepts but nothing after it should see.

`json.loads` takes `NaN` and `Infinity` (not JSON; stored, they come back as `null`), lone
surrogates such as `"\\ud800"` (no UTF-8 encoder can write them back: every response and
store fails) and nesting as deep as its recursion limit (pydantic's serializer and the
template renderer give up far sooner). Such a body answers 400 `INVALID_JSON` naming the
problem, before any route reads it. The body is read once here and replayed to the app.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.i18n import Message as Text
from shared.i18n import pick_language
from shared.web.errors import error_body

# Far beyond any drawn workflow or input; below where pydantic (about 250) gives up.
MAX_JSON_DEPTH: Final = 64
# Larger bodies pass unchecked: the gateway refuses them (413) before any service sees them.
MAX_CHECKED_BYTES: Final = 16 * 1024 * 1024
# A `\uD800`-`\uDFFF` escape: only then can a string hold a surrogate (a pair is fine).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

_INVALID = Text("请求体不是有效的 JSON:{problem}", "The body is not valid JSON: {problem}")
_NOT_UTF8 = Text("不是 UTF-8 编码", "it is not UTF-8")
_NUMBER = Text("数字无效:{detail}", "invalid number: {detail}")
_NOT_FINITE = Text("不允许 NaN 或 Infinity:{token}", "NaN and Infinity are not allowed: {token}")
_SURROGATE = Text("字符串含有孤立的代理字符(\\ud800-\\udfff)", "a string holds a lone surrogate")
# PostgreSQL text cannot hold NUL: one in a name would stop a read model's projection.
_NUL = Text("字符串含有 NUL 字符(\\u0000)", "a string holds a NUL character (\\u0000)")
_TOO_DEEP = Text("嵌套过深(最多 {limit} 层)", "nested too deeply (at most {limit} levels)")


class JsonRefused(ValueError):
    def __init__(self, text: Text, **params: Any) -> None:
        super().__init__(text.en)
        self.text = text
        self.params = params


def _not_finite(token: str) -> Any:
    raise JsonRefused(_NOT_FINITE, token=token)


def _finite_float(token: str) -> float:
    number = float(token)
    if number in (float("inf"), float("-inf")):  # 1e999 is JSON, but reads as Infinity
        raise JsonRefused(_NOT_FINITE, token=token[:40])
    return number


def _check_parsed(value: Any, check_strings: bool) -> None:
    """Depth, and (when the text has surrogate escapes) every string, without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise JsonRefused(_TOO_DEEP, limit=MAX_JSON_DEPTH)
            if isinstance(item, dict):
                if check_strings:
                    stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
        elif check_strings and isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonRefused(_SURROGATE) from None
            if "\x00" in item:
                raise JsonRefused(_NUL)


def check_json_body(body: bytes) -> None:
    """Raise `JsonRefused` naming what is wrong with a JSON body, JSONDecodeError when it is
    not JSON at all; nothing when it is sound."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRefused(_NOT_UTF8) from None
    try:
        parsed = json.loads(text, parse_constant=_not_finite, parse_float=_finite_float)
    except RecursionError:
        raise JsonRefused(_TOO_DEEP, limit=MAX_JSON_DEPTH) from None
    except (JsonRefused, json.JSONDecodeError):
        raise  # a syntax error is the app's to report (422, where it is in the body)
    except ValueError as exc:  # an integer of more than 4300 digits
        raise JsonRefused(_NUMBER, detail=str(exc)[:80]) from None
    suspect = _SURROGATE_ESCAPE.search(body) is not None or b"\\u0000" in body
    _check_parsed(parsed, check_strings=suspect)


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", []):
        if key == b"content-type":
            media: bytes = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # FastAPI reads a body without a content type as JSON too


def _declared_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class JsonBodyGuard:
    """ASGI middleware: a JSON body is checked by `check_json_body` before the app runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = _declared_length(scope)
        if (
            scope["type"] != "http"
            or scope.get("method") not in ("POST", "PUT", "PATCH", "DELETE")
            or not length
            or length > MAX_CHECKED_BYTES
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_json_body(body)
        except JsonRefused as refused:
            await self._refuse(scope, refused, receive, send)
            return
        except json.JSONDecodeError:
            pass  # the app reports a syntax error itself
        replayed: Message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([replayed], receive), send)

    @staticmethod
    async def _refuse(scope: Scope, refused: JsonRefused, receive: Receive, send: Send) -> None:
        accept = next((v for k, v in scope.get("headers", []) if k == b"accept-language"), b"")
        language = pick_language(accept.decode("latin-1"))
        problem = refused.text.render(language, **refused.params)
        detail = _INVALID.render(language, problem=problem)
        response = JSONResponse(error_body(400, "INVALID_JSON", detail), status_code=400)
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return replay
