"""The data_source_query tool: read-only queries on a data source of the workflow's owner.

The query goes to the data sources service as the workflow's owner, so a model can reach
only that person's data sources; the service refuses anything but one read-only statement.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from services.executor.worker.datasources_client import DataSourceQueryError
from shared.i18n import LocalizedError, Message
from shared.workflow.tools import DataSourceQueryTool

if TYPE_CHECKING:
    from services.executor.worker.tools.registry import ToolContext


class DataSourceQueryArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(max_length=100_000)
    data_source_id: str | None = Field(default=None, max_length=200)


class DataSourceError(LocalizedError):
    """A query that cannot run; a bilingual message for the model."""


_UNAVAILABLE = Message(
    "执行器没有配置数据源服务,无法查询数据源",
    "data source queries are not available: the executor has no data sources service",
)
_ID_REQUIRED = Message(
    "缺少参数 data_source_id(要查询的数据源)",
    "the argument data_source_id (the data source to query) is required",
)
_ID_CONFIGURED = Message(
    "此工具的数据源已配置好,不要传 data_source_id",
    "this tool's data source is configured: do not pass data_source_id",
)


def describe(tool: DataSourceQueryTool) -> str:
    return (
        "Run a read-only query on a data source and get the rows back as JSON "
        f"(at most {tool.max_rows} rows)."
    )


def parameters(tool: DataSourceQueryTool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "query": {"type": "string", "description": "The query, e.g. an SQL SELECT"}
    }
    required = ["query"]
    if tool.data_source_id is None:
        properties["data_source_id"] = {
            "type": "string",
            "description": "The id of the data source to query",
        }
        required.append("data_source_id")
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


async def run_data_source_query(
    tool: DataSourceQueryTool, arguments: DataSourceQueryArguments, ctx: ToolContext
) -> str:
    """The rows as JSON text; DataSourceError when the query cannot run."""
    if tool.data_source_id is not None and arguments.data_source_id is not None:
        raise DataSourceError(_ID_CONFIGURED)
    source_id = tool.data_source_id or arguments.data_source_id
    if not source_id:
        raise DataSourceError(_ID_REQUIRED)
    if ctx.data_sources is None:
        raise DataSourceError(_UNAVAILABLE)
    try:
        result = await ctx.data_sources.query(
            ctx.owner_id, source_id, arguments.query, limit=tool.max_rows
        )
    except DataSourceQueryError as exc:
        raise DataSourceError(Message(exc.render("zh"), exc.render("en"))) from exc
    shown = {"rows": result.get("data", []), "count": result.get("count", 0)}
    if result.get("truncated"):
        shown["truncated"] = True
    return json.dumps(shown, ensure_ascii=False, default=str)
