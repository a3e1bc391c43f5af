"""Tools an agent node may call, told apart by `type`. Each becomes one function the model can
call; `name` (default: the type) is the function's name, `description` overrides ours."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# OpenAI's rule for function names.
ToolName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class ToolBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ToolName | None = None
    description: str | None = Field(default=None, max_length=2000)

    @property
    def tool_name(self) -> str:
        return self.name or str(getattr(self, "type", ""))


def _only_get() -> list[HttpMethod]:
    return ["GET"]


class HttpRequestTool(ToolBase):
    """HTTP requests to public addresses (private ones are refused unless settings allow)."""

    type: Literal["http_request"]
    allowed_hosts: list[str] = Field(
        default_factory=list, max_length=100, description="Empty: any public host."
    )
    methods: list[HttpMethod] = Field(default_factory=_only_get, min_length=1)
    timeout: float = Field(default=30, gt=0, le=300)
    max_response_chars: int = Field(default=20_000, ge=100, le=1_000_000)


class CalculatorTool(ToolBase):
    """Arithmetic on an expression the model writes, evaluated safely (no eval)."""

    type: Literal["calculator"]


class DataSourceQueryTool(ToolBase):
    """Read-only queries on a data source of the workflow's owner."""

    type: Literal["data_source_query"]
    data_source_id: str | None = Field(
        default=None,
        max_length=200,
        description="A template; None lets the model pass data_source_id as an argument.",
    )
    max_rows: int = Field(default=100, ge=1, le=1000)


Tool = Annotated[
    HttpRequestTool | CalculatorTool | DataSourceQueryTool, Field(discriminator="type")
]
