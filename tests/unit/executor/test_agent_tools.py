"""The agent node's tools: their function schemas and their calls, http_request against a real
local server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter

from services.executor.worker.tools import ToolContext, ToolOutcome, call_tool, tool_schema
from services.executor.worker.tools.registry import tool_deadline_s
from shared.net.outbound import OutboundPolicy
from shared.workflow.tools import Tool
from tests.support.http_servers import QuietHandler, serving
from tests.support.processes import free_port

TOOL = TypeAdapter(Tool)
LOOPBACK = OutboundPolicy.from_strings(["127.0.0.1/32"])


def tool(**config: Any) -> Tool:
    return TOOL.validate_python(config)


class _Handler(QuietHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path == "/slow":
            time.sleep(3)
            self.reply(200, b"late", "text/plain")
        elif self.path == "/missing":
            self.reply(404, b"gone", "text/plain")
        elif self.path == "/big":
            self.reply(200, b"y" * 5000, "text/plain")
        else:
            self.reply(
                200, {"method": self.command, "path": self.path, "body": body, "城市": "杭州"}
            )

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


@pytest.fixture
def ctx(http: httpx.AsyncClient) -> ToolContext:
    return ToolContext(http=http, outbound=LOOPBACK, language="en")


async def call(config: Tool, ctx: ToolContext, **arguments: Any) -> ToolOutcome:
    return await call_tool(config, json.dumps(arguments), ctx)


# -- schemas --------------------------------------------------------------------------------


def test_calculator_schema() -> None:
    schema = tool_schema(tool(type="calculator"))
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "calculator"
    assert "sqrt" in function["description"]
    assert function["parameters"]["properties"]["expression"]["type"] == "string"
    assert function["parameters"]["required"] == ["expression"]
    assert function["parameters"]["additionalProperties"] is False


def test_http_request_schema_lists_the_tools_methods_and_hosts() -> None:
    config = tool(
        type="http_request",
        name="weather",
        methods=["GET", "POST"],
        allowed_hosts=["api.example.com"],
    )
    function = tool_schema(config)["function"]
    assert function["name"] == "weather"
    assert "api.example.com" in function["description"]
    parameters = function["parameters"]
    assert parameters["required"] == ["url"]
    assert parameters["properties"]["method"]["enum"] == ["GET", "POST"]
    assert parameters["properties"]["headers"] == {
        "type": "object",
        "additionalProperties": {"type": "string"},
        "description": "Request headers",
    }
    assert parameters["properties"]["body"]["type"] == "string"
    assert parameters["properties"]["url"]["type"] == "string"


def test_a_configured_description_wins() -> None:
    config = tool(type="calculator", name="calc", description="Do maths")
    assert tool_schema(config)["function"] == {
        "name": "calc",
        "description": "Do maths",
        "parameters": tool_schema(tool(type="calculator"))["function"]["parameters"],
    }


def test_data_source_schema_asks_for_the_id_only_when_none_is_configured() -> None:
    free = tool_schema(tool(type="data_source_query"))["function"]["parameters"]
    assert set(free["properties"]) == {"query", "data_source_id"}
    assert free["required"] == ["query", "data_source_id"]
    fixed = tool_schema(tool(type="data_source_query", data_source_id="ds-1"))["function"]
    assert set(fixed["parameters"]["properties"]) == {"query"}
    assert fixed["parameters"]["required"] == ["query"]


def test_schemas_are_json() -> None:
    for config in ({"type": "calculator"}, {"type": "http_request"}, {"type": "data_source_query"}):
        json.dumps(tool_schema(tool(**config)))


# -- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("6*7", "42"),
        ("5/2", "2.5"),
        ("10/2", "5"),
        ("0.1 + 0.2", "0.3"),
        ("-(2 + 3) * 4", "-20"),
        ("7 // 2 + 7 % 2", "4"),
        ("2 ** 10", "1024"),
        ("2 ** -1", "0.5"),
        ("sqrt(16) + abs(-1) + floor(2.7) + ceil(2.1)", "10"),
        ("round(pi, 3)", "3.142"),
        ("min(3, 1, 2) + max(3, 1, 2)", "4"),
        ("log(e) + exp(0) + sin(0) + cos(0) + tan(0)", "3"),
        ("log(8, 2)", "3"),
        ("9 ** 999 % 10", "9"),
    ],
)
async def test_the_calculator_computes(expression: str, result: str, ctx: ToolContext) -> None:
    assert await call(tool(type="calculator"), ctx, expression=expression) == ToolOutcome(
        True, result
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("2 ** 100000", "exponent too large"),
        ("10 ** 1000 ** 1000", "exponent too large"),
        ("(10 ** 1000) ** 1000", "result too large"),
        ("(2 ** 1000) ** 10 * (2 ** 1000) ** 10", "result too large"),
        ("exp(100000)", "floating-point range"),
        ("1e308 * 10", "not a finite number"),
        ("sqrt(-1)", "the function sqrt() cannot take -1 (number)"),
        ("(-8) ** 0.5", "not a real number"),
        ("round(1.5, 10**9)", "round to too many digits"),  # round(1, -10**9): see below
        ("round(2 ** 1000, -2000)", "round to too many digits"),
        ("floor(1e308) ** 10", "result too large"),
        ("abs(-(2 ** 1000) ** 11)", "result too large"),
        ("__import__('os').system('true')", "attribute access .system"),
        ("__import__('os')", "unknown function __import__"),
        ("().__class__", "attribute access .__class__"),
        ("open('/etc/passwd')", "unknown function open"),
        ("x + 1", "unknown name x"),
        ("'a' * 3", "numbers only"),
        ("True + 1", "numbers only"),
        ("1 < 2", "not supported"),
        ("[1, 2]", "not supported"),
        ("(lambda: 1)()", "calling an expression"),
        ("round(number=1.5)", "no keyword arguments"),
        ("1 +", "syntax error"),
        ("", "empty"),
        ("1" * 1001, "too long"),
        ("-" * 500 + "1", "nested too deeply"),
    ],
)
async def test_the_calculator_refuses(expression: str, message: str, ctx: ToolContext) -> None:
    outcome = await call(tool(type="calculator"), ctx, expression=expression)
    assert not outcome.ok
    assert message in outcome.result


_ROUND_ATTACK = """
import asyncio, json, httpx
from services.executor.worker.tools import ToolContext, call_tool
from shared.net.outbound import OutboundPolicy
from shared.workflow.tools import CalculatorTool

async def main() -> None:
    async with httpx.AsyncClient() as http:
        ctx = ToolContext(http=http, outbound=OutboundPolicy(), language="en")
        tool = CalculatorTool(type="calculator")
        for expression in ("round(1, -10**9)", "round(7, -10**6)"):
            outcome = await call_tool(tool, json.dumps({"expression": expression}), ctx)
            print(outcome.ok, outcome.result)

asyncio.run(main())
"""


def test_the_calculator_round_that_never_returned_is_refused() -> None:
    # The raw builtin computed 10**(10**9) on the worker's event loop. In a subprocess with a
    # timeout, so that a regression fails this test instead of hanging the suite.
    done = subprocess.run(
        [sys.executable, "-c", _ROUND_ATTACK],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    said = done.stdout + done.stderr
    assert said.count("False round to too many digits (at most 1000)") == 2, said


async def test_a_tool_call_past_its_deadline_is_abandoned_clearly(
    http: httpx.AsyncClient, base_url: str
) -> None:
    # The server answers after 3 s; the tool's own timeout (30 s) would wait for it.
    hasty = ToolContext(http=http, outbound=LOOPBACK, language="en", max_call_s=0.5)
    started = time.monotonic()
    outcome = await call(tool(type="http_request", timeout=30), hasty, url=f"{base_url}/slow")
    assert outcome == ToolOutcome(
        False, "the tool http_request did not finish within 0.5 s; the call was abandoned"
    )
    assert time.monotonic() - started < 2.5
    chinese = ToolContext(http=http, outbound=LOOPBACK, max_call_s=0.5)
    outcome = await call(tool(type="http_request"), chinese, url=f"{base_url}/slow")
    assert outcome == ToolOutcome(False, "工具 http_request 在 0.5 秒内没有完成,已放弃这次调用")


def test_every_tool_has_a_deadline() -> None:
    assert tool_deadline_s(tool(type="calculator")) == 10.0
    assert tool_deadline_s(tool(type="http_request", timeout=20)) == 35.0
    assert tool_deadline_s(tool(type="data_source_query")) == 75.0


async def test_calculator_messages_follow_the_language(http: httpx.AsyncClient) -> None:
    ctx = ToolContext(http=http, outbound=OutboundPolicy())
    outcome = await call(tool(type="calculator"), ctx, expression="1/0")
    assert outcome == ToolOutcome(False, "除数为零")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"6*7"', "must be a JSON object"),
        ("{}", "expression: Field required"),
        ('{"expression": "1+1", "extra": 1}', "extra: Extra inputs are not permitted"),
        ('{"expression": 42}', "expression: Input should be a valid string"),
        ("", "expression: Field required"),
    ],
)
async def test_bad_arguments_are_answers(arguments: str, message: str, ctx: ToolContext) -> None:
    outcome = await call_tool(tool(type="calculator"), arguments, ctx)
    assert not outcome.ok
    assert message in outcome.result


# -- http_request ------------------------------------------------------------------------


async def test_http_request_returns_status_type_and_body(ctx: ToolContext, base_url: str) -> None:
    outcome = await call(tool(type="http_request"), ctx, url=f"{base_url}/weather?city=hz")
    assert outcome.ok
    result = json.loads(outcome.result)
    assert result["status"] == 200
    assert result["content_type"] == "application/json"
    assert result["truncated"] is False
    assert json.loads(result["body"]) == {
        "method": "GET",
        "path": "/weather?city=hz",
        "body": "",
        "城市": "杭州",
    }
    assert "杭州" in outcome.result  # readable text for the model, not \\u escapes


async def test_http_request_sends_the_allowed_method_with_body_and_headers(
    ctx: ToolContext, base_url: str
) -> None:
    config = tool(type="http_request", methods=["GET", "POST"])
    outcome = await call(
        config,
        ctx,
        url=f"{base_url}/items",
        method="post",
        headers={"Content-Type": "application/json"},
        body='{"a": 1}',
    )
    assert outcome.ok, outcome.result
    echoed = json.loads(json.loads(outcome.result)["body"])
    assert (echoed["method"], echoed["body"]) == ("POST", '{"a": 1}')


async def test_http_request_refuses_a_method_not_configured(
    ctx: ToolContext, base_url: str
) -> None:
    outcome = await call(tool(type="http_request"), ctx, url=f"{base_url}/x", method="DELETE")
    assert outcome == ToolOutcome(
        False, "the method DELETE is not allowed for this tool (allowed: GET)"
    )


async def test_a_404_is_ok_for_the_tool(ctx: ToolContext, base_url: str) -> None:
    outcome = await call(tool(type="http_request"), ctx, url=f"{base_url}/missing")
    assert outcome.ok
    assert json.loads(outcome.result)["status"] == 404


async def test_http_request_cuts_long_bodies(ctx: ToolContext, base_url: str) -> None:
    config = tool(type="http_request", max_response_chars=100)
    result = json.loads((await call(config, ctx, url=f"{base_url}/big")).result)
    assert (result["body"], result["truncated"]) == ("y" * 100, True)


async def test_http_request_refuses_private_addresses(
    http: httpx.AsyncClient, base_url: str
) -> None:
    config = tool(type="http_request")
    strict = ToolContext(http=http, outbound=OutboundPolicy(), language="en")
    outcome = await call(config, strict, url=f"{base_url}/weather")
    assert not outcome.ok
    assert "requests to the private address 127.0.0.1 (127.0.0.1) are not allowed" in (
        outcome.result
    )
    metadata = await call(config, strict, url="http://169.254.169.254/latest/meta-data/")
    assert not metadata.ok
    assert "169.254.169.254" in metadata.result
    chinese = ToolContext(http=http, outbound=OutboundPolicy())
    assert "不允许访问内网地址" in (await call(config, chinese, url=f"{base_url}/x")).result
    scheme = await call(config, strict, url="file:///etc/passwd")
    assert scheme == ToolOutcome(False, "only http and https URLs are allowed, not file")


async def test_http_request_keeps_to_its_allowed_hosts(ctx: ToolContext, base_url: str) -> None:
    config = tool(type="http_request", allowed_hosts=["api.example.com"])
    outcome = await call(config, ctx, url=f"{base_url}/weather")
    assert not outcome.ok
    assert "not allowed (allowed hosts: api.example.com)" in outcome.result
    allowed = tool(type="http_request", allowed_hosts=["127.0.0.1"])
    assert (await call(allowed, ctx, url=f"{base_url}/weather")).ok


async def test_http_request_reports_a_dead_port(ctx: ToolContext) -> None:
    outcome = await call(tool(type="http_request"), ctx, url=f"http://127.0.0.1:{free_port()}/")
    assert not outcome.ok
    assert "cannot connect to 127.0.0.1" in outcome.result


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{url: 1}", "not valid JSON"),
        ("{}", "url: Field required"),
        ('{"url": "http://x", "headers": {"a": 1}}', "headers.a: Input should be a valid string"),
        ('{"url": "http://x", "timeout": 5}', "timeout: Extra inputs are not permitted"),
    ],
)
async def test_http_request_bad_arguments(arguments: str, message: str, ctx: ToolContext) -> None:
    outcome = await call_tool(tool(type="http_request"), arguments, ctx)
    assert not outcome.ok
    assert message in outcome.result
    assert '"url"' in outcome.result or "parameters: url, method, headers, body" in outcome.result


# -- data_source_query ---------------------------------------------------------------------


async def test_without_a_data_sources_service_queries_say_so(http: httpx.AsyncClient) -> None:
    config = tool(type="data_source_query")
    english = ToolContext(http=http, outbound=OutboundPolicy(), language="en")
    outcome = await call(config, english, query="select 1", data_source_id="ds-1")
    assert outcome == ToolOutcome(
        False,
        "data source queries are not available: the executor has no data sources service",
    )
    chinese = ToolContext(http=http, outbound=OutboundPolicy())
    outcome = await call(config, chinese, query="select 1", data_source_id="ds-1")
    assert not outcome.ok
    assert "没有配置数据源服务" in outcome.result


async def test_data_source_arguments_are_checked_first(ctx: ToolContext) -> None:
    free = tool(type="data_source_query")
    missing = await call(free, ctx, query="select 1")
    assert (missing.ok, "data_source_id" in missing.result) == (False, True)
    fixed = tool(type="data_source_query", data_source_id="ds-1")
    twice = await call(fixed, ctx, query="select 1", data_source_id="ds-2")
    assert "do not pass data_source_id" in twice.result
    assert "not available" in (await call(fixed, ctx, query="select 1")).result
