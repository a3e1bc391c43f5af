"""The platform's one exception tree. `shared.web.errors` maps it to HTTP in one place.

Raise these from domain and application code; never build error responses by hand.
"""

from __future__ import annotations

from typing import Any, ClassVar

from shared.i18n import Language, Message


class AppError(Exception):
    """Base of every error a client may see: a status, a stable code and a localized message."""

    status_code: ClassVar[int] = 400
    default_code: ClassVar[str] = "BAD_REQUEST"
    default_message: ClassVar[Message] = Message("请求参数错误", "Bad request")

    def __init__(
        self,
        message: Message | None = None,
        *,
        error_code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        **params: Any,
    ) -> None:
        self.message = message or self.default_message
        self.error_code = error_code or self.default_code
        self.headers = headers or {}
        self.extra = extra or {}
        self.params = params
        super().__init__(self.message.render("en", **params))

    def detail(self, language: Language) -> str:
        return self.message.render(language, **self.params)


class BadRequest(AppError):
    pass


class Unauthorized(AppError):
    status_code = 401
    default_code = "UNAUTHORIZED"
    default_message = Message("未授权,请先登录", "Not authenticated")

    def __init__(self, message: Message | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class Forbidden(AppError):
    status_code = 403
    default_code = "FORBIDDEN"
    default_message = Message("禁止访问,权限不足", "Forbidden")


class NotFound(AppError):
    status_code = 404
    default_code = "NOT_FOUND"
    default_message = Message("资源不存在", "Not found")


class Conflict(AppError):
    status_code = 409
    default_code = "CONFLICT"
    default_message = Message("资源冲突", "Conflict")


class PayloadTooLarge(AppError):
    status_code = 413
    default_code = "PAYLOAD_TOO_LARGE"
    default_message = Message("请求体过大", "Request body too large")


class ValidationFailed(AppError):
    status_code = 422
    default_code = "VALIDATION_ERROR"
    default_message = Message("请求参数校验失败", "Validation failed")


class TooManyRequests(AppError):
    status_code = 429
    default_code = "TOO_MANY_REQUESTS"
    default_message = Message("请求过于频繁,请稍后再试", "Too many requests; try again later")


class QuotaExceeded(TooManyRequests):
    """A per-user quota (workflows, data sources, open sockets...) is used up."""

    default_code = "QUOTA_EXCEEDED"
    default_message = Message("已达到配额上限", "Quota exceeded")


class BadGateway(AppError):
    status_code = 502
    default_code = "BAD_GATEWAY"
    default_message = Message("上游系统返回了错误", "An upstream system failed")


class ServiceUnavailable(AppError):
    status_code = 503
    default_code = "SERVICE_UNAVAILABLE"
    default_message = Message("服务暂不可用,请稍后重试", "Service temporarily unavailable")


class StoreUnavailable(ServiceUnavailable):
    """The service's database cannot be reached (restarted, network down): try again soon."""

    default_code = "STORE_UNAVAILABLE"
    default_message = Message(
        "数据存储暂不可用,请稍后重试", "The data store is unavailable; retry shortly"
    )


class GatewayTimeout(AppError):
    status_code = 504
    default_code = "UPSTREAM_TIMEOUT"
    default_message = Message("上游服务响应超时", "Upstream service timed out")
