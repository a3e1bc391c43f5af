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

_REFUSED = Message(
    "数据源查询失败({status}):{detail}", "data source query failed ({status}): {detail}"
)
_DOWN = Message("数据源服务不可用:{detail}", "the data sources service is unavailable: {detail}")
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
            raise DataSourceQueryError(_DOWN, retryable=True, detail=type(exc).__name__) from exc
        if response.status_code != 200:
            raise DataSourceQueryError(
                _REFUSED,
                retryable=response.status_code in (502, 503, 504),
                status=response.status_code,
                detail=_detail(response),
            )
        result: dict[str, Any] = response.json()
        return result


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:500]
    except ValueError:
        return response.text[:200]
