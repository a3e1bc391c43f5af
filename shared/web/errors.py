"""The one place where exceptions become HTTP responses of the documented shape.

Every error, including unknown routes, 405, request validation and unexpected failures,
answers `{"detail": str, "error_code": str, "status_code": int}`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import AppError, StoreUnavailable
from shared.eventstore import STORE_UNREACHABLE
from shared.i18n import Language, Message, pick_language
from shared.workflow.issues import Issue

log = logging.getLogger("agentflow.errors")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """The documented error shape."""

    detail: str = Field(examples=["错误描述"])
    error_code: str = Field(examples=["ERROR_CODE"])
    status_code: int = Field(examples=[400])
    errors: list[FieldError] | list[Issue] | None = Field(
        default=None,
        description="Per-field problems on request validation errors; the workflow's issues "
        "when a workflow fails validation (INVALID_WORKFLOW).",
    )


# Starlette raises HTTPException for routing-level failures; give each a stable code and text.
_HTTP_STATUS: dict[int, tuple[str, Message]] = {
    400: ("BAD_REQUEST", Message("请求参数错误", "Bad request")),
    401: ("UNAUTHORIZED", Message("未授权,请先登录", "Not authenticated")),
    403: ("FORBIDDEN", Message("禁止访问,权限不足", "Forbidden")),
    404: ("NOT_FOUND", Message("资源不存在", "Not found")),
    405: ("METHOD_NOT_ALLOWED", Message("不支持该请求方法", "Method not allowed")),
    413: ("PAYLOAD_TOO_LARGE", Message("请求体过大", "Request body too large")),
    415: ("UNSUPPORTED_MEDIA_TYPE", Message("不支持的内容类型", "Unsupported media type")),
    429: ("TOO_MANY_REQUESTS", Message("请求过于频繁", "Too many requests")),
}
_INTERNAL = Message("服务器内部错误", "Internal server error")
_VALIDATION = Message("请求参数校验失败:{summary}", "Validation failed: {summary}")


def error_body(status_code: int, error_code: str, detail: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"detail": detail, "error_code": error_code, "status_code": status_code}
    body.update(extra)
    return body


def language_of(request: Request) -> Language:
    return pick_language(request.headers.get("accept-language"))


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc if part not in ("body", "query", "path", "form"))


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    body = error_body(
        exc.status_code, exc.error_code, exc.detail(language_of(request)), **exc.extra
    )
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers or None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code, message = _HTTP_STATUS.get(exc.status_code, ("HTTP_ERROR", Message("请求失败", "Failed")))
    # Framework details (e.g. "Not Found") are English and add nothing to our message.
    body = error_body(exc.status_code, code, message.render(language_of(request)))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        FieldError(
            loc=list(err.get("loc", ())), msg=str(err.get("msg", "")), type=str(err.get("type", ""))
        )
        for err in exc.errors()
    ]
    summary = "; ".join(f"{_location(err.loc) or 'body'}: {err.msg}" for err in errors[:3])
    detail = _VALIDATION.render(language_of(request), summary=summary)
    body = error_body(422, "VALIDATION_ERROR", detail, errors=[e.model_dump() for e in errors])
    return JSONResponse(body, status_code=422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    body = error_body(500, "INTERNAL_ERROR", _INTERNAL.render(language_of(request)))
    return JSONResponse(body, status_code=500)


async def _store_unreachable(request: Request, exc: Exception) -> JSONResponse:
    """A 503 the client may retry, not a 500."""
    log.warning("store unreachable on %s %s: %s", request.method, request.url.path, exc)
    return await _app_error(request, StoreUnavailable(headers={"Retry-After": "1"}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    for kind in STORE_UNREACHABLE:
        app.add_exception_handler(kind, _store_unreachable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# For `responses=` on routes, so the OpenAPI document shows the error shape.
def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse} for code in codes}
