"""The agent node's tools as the model sees them: `tool_schema` describes one as an OpenAI
function, `call_tool` runs the call the model made.

`call_tool` never raises for what the model or the remote side got wrong (arguments that are
not JSON or do not fit, a refused address, a timeout, ...): the outcome is `ok=False` with a
message in the execution's language, so the model can correct itself. Only bugs raise.

No tool call can stall a worker: the calculator (CPU-bound, bounded by its evaluator) runs in
a thread, off the event loop, and every call runs under a deadline (`tool_deadline_s`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Final

import httpx
from pydantic import ValidationError

from services.executor.worker.datasources_client import DataSourcesClient
from services.executor.worker.tools import calculator, data_source, http_request
from shared.i18n import Language, Message
from shared.net.outbound import OutboundError, OutboundPolicy
from shared.workflow.expressions import ExpressionError
from shared.workflow.tools import CalculatorTool, DataSourceQueryTool, HttpRequestTool, Tool

_SHOWN_ERRORS: Final = 5

_NOT_JSON = Message(
    "参数不是有效的 JSON:{detail}(例如 {example})",
    "the arguments are not valid JSON: {detail} (e.g. {example})",
)
_TOO_DEEP = Message("嵌套过深", "nested too deeply")
_NOT_OBJECT = Message(
    "参数必须是 JSON 对象(例如 {example})",
    "the arguments must be a JSON object (e.g. {example})",
)
_TIMED_OUT = Message(
    "工具 {tool} 在 {seconds} 秒内没有完成,已放弃这次调用",
    "the tool {tool} did not finish within {seconds} s; the call was abandoned",
)
_BAD_ARGUMENTS = Message(
    "参数无效:{detail}(参数:{expected})",
    "invalid arguments: {detail} (parameters: {expected})",
)


# The calculator's bounds keep it to milliseconds; the deadline is a backstop.
CALCULATOR_DEADLINE_S: Final = 10.0
# Beyond a tool's own timeout (an http_request's per request, the data sources client's 60 s
# per query), what a call may take in all: redirects, connecting, reading the answer.
_DEADLINE_GRACE_S: Final = 15.0
DATA_SOURCE_QUERY_DEADLINE_S: Final = 60.0 + _DEADLINE_GRACE_S


def tool_deadline_s(tool: Tool) -> float:
    """How long one call of `tool` may take before it is abandoned with ok=False."""
    if isinstance(tool, CalculatorTool):
        return CALCULATOR_DEADLINE_S
    if isinstance(tool, HttpRequestTool):
        return tool.timeout + _DEADLINE_GRACE_S
    return DATA_SOURCE_QUERY_DEADLINE_S


@dataclass(frozen=True)
class ToolContext:
    """What tools may use: the worker's HTTP client, the outbound guard, the language."""

    http: httpx.AsyncClient
    outbound: OutboundPolicy
    language: Language = "zh"
    data_sources: DataSourcesClient | None = None
    owner_id: str = ""  # the workflow's owner: data source queries run as them
    max_call_s: float | None = None  # a cap below each tool's own deadline (tool_deadline_s)


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
        # In a thread: the event loop keeps serving heartbeats and other nodes meanwhile.
        value = await asyncio.to_thread(calculator.calculate, arguments.expression)
        return calculator.format_number(value)
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
        # The parser's words say where the JSON goes wrong; Python's for too deep a nesting
        # would name its own internals.
        detail = _TOO_DEEP.render(language) if isinstance(exc, RecursionError) else str(exc)
        return ToolOutcome(
            False, _NOT_JSON.render(language, detail=detail[:200], example=_example(tool))
        )
    if not isinstance(raw, dict):
        return ToolOutcome(False, _NOT_OBJECT.render(language, example=_example(tool)))
    deadline_s = tool_deadline_s(tool)
    if ctx.max_call_s is not None:
        deadline_s = min(deadline_s, ctx.max_call_s)
    deadline = asyncio.timeout(deadline_s)
    try:
        async with deadline:
            return ToolOutcome(True, await _run(tool, raw, ctx))
    except TimeoutError:
        if not deadline.expired():  # a timeout of the tool's own, not our deadline
            raise
        seconds = f"{deadline_s:g}"
        return ToolOutcome(False, _TIMED_OUT.render(language, tool=tool.tool_name, seconds=seconds))
    except ValidationError as exc:
        expected = ", ".join(_parameters(tool)["properties"])
        detail = _validation_detail(exc)
        return ToolOutcome(False, _BAD_ARGUMENTS.render(language, detail=detail, expected=expected))
    except (ExpressionError, OutboundError, data_source.DataSourceError) as exc:
        return ToolOutcome(False, exc.render(language))
