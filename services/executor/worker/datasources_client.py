"""How workers reach the data sources service: as the workflow's owner, never as anyone else.

Each call carries a query grant for the owner (one minute, `shared/security/grants.py`), so the
data sources service applies its own rule, "your data sources only", to workflows as it does
to people. A grant is good for the query route only; workers hold no JWT signing secret.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx

from shared.i18n import LocalizedError, Message
from shared.security.grants import QueryGrants

# `status` is the HTTP status and the error_code (`400 DATA_SOURCE_AUTH_FAILED`): a failed
# node names the code as the API would.
_REFUSED = Message(
    "数据源查询失败({status}):{detail}", "data source query failed ({status}): {detail}"
)
_DOWN = Message("数据源服务不可用:{detail}", "the data sources service is unavailable: {detail}")
_NO_ANSWER = Message("请求超时", "the request timed out")
_NO_CONNECTION = Message("无法连接", "it could not be reached")
_BAD_ID = Message("数据源 id 无效:{id}", "invalid data source id: {id}")


class DataSourceQueryError(LocalizedError):
    """The query did not run; `retryable` when the service (not the query) was the problem."""

    def __init__(self, message: Message, *, retryable: bool = False, **params: Any) -> None:
        super().__init__(message, **params)
        self.retryable = retryable


class DataSourcesClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, grants: QueryGrants) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._grants = grants

    async def query(
        self,
        owner_id: str,
        data_source_id: str,
        query: str,
        parameters: dict[str, Any] | list[Any] | None = None,
        limit: int | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """`{data, count, truncated, columns}` of one read-only query, as the owner."""
        try:
            source = UUID(str(data_source_id))
        except ValueError:
            raise DataSourceQueryError(_BAD_ID, id=str(data_source_id)[:100]) from None
        grant = self._grants.issue(UUID(owner_id))
        body: dict[str, Any] = {"query": query, "parameters": parameters}
        if limit is not None:
            body["limit"] = limit
        try:
            response = await self._http.post(
                f"{self._base_url}/api/v1/data-sources/{source}/query",
                json=body,
                headers={"authorization": f"Bearer {grant}"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            # In words, not httpx's class name: the user reads this in the node's error.
            why = _NO_ANSWER if isinstance(exc, httpx.TimeoutException) else _NO_CONNECTION
            raise DataSourceQueryError(_DOWN, retryable=True, detail=why) from exc
        if response.status_code != 200:
            code, detail = _error(response)
            raise DataSourceQueryError(
                _REFUSED,
                # A 4xx (wrong credentials included) fails the same way when tried again.
                retryable=response.status_code in (502, 503, 504),
                status=f"{response.status_code} {code}".strip(),
                detail=detail,
            )
        result: dict[str, Any] = response.json()
        return result


def _error(response: httpx.Response) -> tuple[str, str]:
    """(error_code, detail) of an error answer; the code is empty if it carries none."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("error_code", ""))[:64], str(body.get("detail", ""))[:500]
