"""The data_source_query tool: read-only queries on a data source of the workflow's owner.

The data sources service does not exist yet, so every call answers that queries are not
available; nothing is faked. When the service arrives, `ToolContext` gains its client and
`run_data_source_query` sends the query through it (same signature).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from shared.i18n import LocalizedError, Message
from shared.workflow.tools import DataSourceQueryTool

if TYPE_CHECKING:
    from services.executor.tools.registry import ToolContext


class DataSourceQueryArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(max_length=100_000)
    data_source_id: str | None = Field(default=None, max_length=200)


class DataSourceError(LocalizedError):
    """A query that cannot run; a bilingual message for the model."""


_UNAVAILABLE = Message(
    "数据源服务尚不可用,无法查询数据源",
    "data source queries are not available yet: the data sources service is not deployed",
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
    """The rows as JSON text; DataSourceError when the query cannot run (for now: always)."""
    if tool.data_source_id is not None and arguments.data_source_id is not None:
        raise DataSourceError(_ID_CONFIGURED)
    if tool.data_source_id is None and not arguments.data_source_id:
        raise DataSourceError(_ID_REQUIRED)
    raise DataSourceError(_UNAVAILABLE)
