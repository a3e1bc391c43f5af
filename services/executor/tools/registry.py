"""The agent node's tools as the model sees them: `tool_schema` describes one as an OpenAI
function, `call_tool` runs the call the model made.

`call_tool` never raises for what the model or the remote side got wrong (arguments that are
not JSON or do not fit, a refused address, a timeout, ...): the outcome is `ok=False` with a
message in the execution's language, so the model can correct itself. Only bugs raise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import httpx
from pydantic import ValidationError

from services.executor.datasources_client import DataSourcesClient
from services.executor.tools import calculator, data_source, http_request
from shared.i18n import Language, Message
from shared.net.outbound import OutboundError, OutboundPolicy
from shared.workflow.expressions import ExpressionError
from shared.workflow.tools import CalculatorTool, DataSourceQueryTool, HttpRequestTool, Tool

_SHOWN_ERRORS: Final = 5

_NOT_JSON = Message(
    "参数不是有效的 JSON:{detail}(例如 {example})",
    "the arguments are not valid JSON: {detail} (e.g. {example})",
)
_NOT_OBJECT = Message(
    "参数必须是 JSON 对象(例如 {example})",
    "the arguments must be a JSON object (e.g. {example})",
)
_BAD_ARGUMENTS = Message(
    "参数无效:{detail}(参数:{expected})",
    "invalid arguments: {detail} (parameters: {expected})",
)


@dataclass(frozen=True)
class ToolContext:
    """What tools may use: the worker's HTTP client, the outbound guard, the language."""

    http: httpx.AsyncClient
    outbound: OutboundPolicy
    language: Language = "zh"
    data_sources: DataSourcesClient | None = None
    owner_id: str = ""  # the workflow's owner: data source queries run as them


@dataclass(frozen=True)
class ToolOutcome:
    ok: bool
    result: str  # the content of the tool message the model gets (JSON text when structured)


def _parameters(tool: Tool) -> dict[str, Any]:
    if isinstance(tool, CalculatorTool):
        return calculator.PARAMETERS
    if isinstance(tool, HttpRequestTool):
        return http_request.parameters(tool)
    return data_source.parameters(tool)


def _description(tool: Tool) -> str:
    if isinstance(tool, CalculatorTool):
        return calculator.DESCRIPTION
    if isinstance(tool, HttpRequestTool):
        return http_request.describe(tool)
    return data_source.describe(tool)


def tool_schema(tool: Tool) -> dict[str, Any]:
    """The OpenAI function-tool definition of `tool`."""
    return {
        "type": "function",
        "function": {
            "name": tool.tool_name,
            "description": tool.description or _description(tool),
            "parameters": _parameters(tool),
        },
    }


def _validation_detail(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:_SHOWN_ERRORS]:
        where = ".".join(str(part) for part in error["loc"]) or "(arguments)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def _example(tool: Tool) -> str:
    required = _parameters(tool).get("required", [])
    return json.dumps({name: "..." for name in required})


async def _run(tool: Tool, raw: dict[str, Any], ctx: ToolContext) -> str:
    if isinstance(tool, CalculatorTool):
        arguments = calculator.CalculatorArguments.model_validate(raw)
        return calculator.format_number(calculator.calculate(arguments.expression))
    if isinstance(tool, HttpRequestTool):
        http_arguments = http_request.HttpRequestArguments.model_validate(raw)
        return await http_request.run_http_request(tool, http_arguments, ctx)
    if isinstance(tool, DataSourceQueryTool):
        query_arguments = data_source.DataSourceQueryArguments.model_validate(raw)
        return await data_source.run_data_source_query(tool, query_arguments, ctx)
    raise TypeError(f"not a tool: {tool!r}")


async def call_tool(tool: Tool, arguments: str, ctx: ToolContext) -> ToolOutcome:
    """Run the model's call of `tool` with `arguments` (the JSON text the model wrote)."""
    language = ctx.language
    try:
        raw = json.loads(arguments) if arguments.strip() else {}
    except (ValueError, RecursionError) as exc:
        detail = str(exc)[:200]
        return ToolOutcome(False, _NOT_JSON.render(language, detail=detail, example=_example(tool)))
    if not isinstance(raw, dict):
        return ToolOutcome(False, _NOT_OBJECT.render(language, example=_example(tool)))
    try:
        return ToolOutcome(True, await _run(tool, raw, ctx))
    except ValidationError as exc:
        expected = ", ".join(_parameters(tool)["properties"])
        detail = _validation_detail(exc)
        return ToolOutcome(False, _BAD_ARGUMENTS.render(language, detail=detail, expected=expected))
    except (ExpressionError, OutboundError, data_source.DataSourceError) as exc:
        return ToolOutcome(False, exc.render(language))
