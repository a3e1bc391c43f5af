"""Node failures are worded for the user, in both languages: never a Python exception or class
name (`RemoteProtocolError`, `list`, `maximum recursion depth`), one test per kind of leak."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from services.executor.node_run import NodeRunError
from services.executor.worker.llm.client import ChatClient, LLMError
from services.executor.worker.llm.providers import ProviderEndpoint
from services.executor.worker.runners.llm import json_answer
from services.executor.worker.tools import ToolContext, call_tool
from services.executor.worker.tools.calculator import calculate
from shared.net.outbound import OutboundPolicy
from shared.workflow.bounded_eval import ExpressionError
from shared.workflow.tools import CalculatorTool
from tests.unit.workflow.test_expressions import python_words

ENDPOINT = ProviderEndpoint("custom", "http://provider.test/v1", "sk-plain")


def both(error: LLMError | NodeRunError | ExpressionError) -> list[str]:
    return [error.render("zh"), error.render("en")]


def _raising(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        raise exc("", request=request)  # what httpx does when the socket says nothing

    return answer


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (httpx.RemoteProtocolError, "closed the connection early"),
        (httpx.ReadError, "broke while reading"),
        (httpx.WriteError, "broke while sending"),
        (httpx.ConnectError, "no connection could be made"),
        (httpx.ProxyError, "the proxy failed"),
    ],
)
async def test_a_silent_network_failure_is_described_not_named(
    exc: type[httpx.TransportError], says: str
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_raising(exc))) as mocked:
        client = ChatClient(mocked, max_retries=0)
        with pytest.raises(LLMError) as failed:
            await client.chat(ENDPOINT, model="m", messages=[{"role": "user", "content": "hi"}])
    zh, en = both(failed.value)
    assert says in en
    assert exc.__name__ not in zh + en
    assert python_words(zh) == python_words(en) == []
    assert zh != en  # the description is translated too


async def test_a_stream_that_stops_early_says_so_in_both_languages() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        chunk = {"choices": [{"delta": {"content": "半"}, "index": 0}], "model": "m"}
        body = f"data: {json.dumps(chunk)}\n\n".encode()
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mocked:
        client = ChatClient(mocked, max_retries=0)
        with pytest.raises(LLMError) as failed:
            await client.chat(
                ENDPOINT, model="m", messages=[{"role": "user", "content": "hi"}], on_chunk=_drop
            )
    zh, en = both(failed.value)
    assert "the stream ended before [DONE]" in en
    assert "流在 [DONE] 之前就结束了" in zh


async def _drop(_: str) -> None:
    return None


@pytest.mark.parametrize(
    ("answer", "kind_en", "kind_zh"),
    [("[1, 2]", "list", "列表"), ('"yes"', "text", "文本"), ("3", "number", "数字")],
)
def test_a_json_answer_that_is_no_object_names_its_kind_in_words(
    answer: str, kind_en: str, kind_zh: str
) -> None:
    with pytest.raises(NodeRunError) as failed:
        json_answer(answer)
    zh, en = both(failed.value)
    assert en == f"the model's answer is a JSON {kind_en}, not an object"
    assert zh == f"模型的回答是 JSON {kind_zh},不是 JSON 对象"
    assert "str" not in en.split()
    assert "int" not in en.split()


def test_a_json_answer_nested_too_deeply_says_so() -> None:
    with pytest.raises(NodeRunError) as failed:
        json_answer("[" * 100_000 + "]" * 100_000)
    zh, en = both(failed.value)
    assert "nested too deeply" in en
    assert "recursion" not in en
    assert python_words(zh) == python_words(en) == []


async def test_tool_arguments_nested_too_deeply_say_so() -> None:
    async with httpx.AsyncClient() as http:
        for language in ("zh", "en"):
            context = ToolContext(http=http, outbound=OutboundPolicy(), language=language)
            outcome = await call_tool(CalculatorTool(type="calculator"), "[" * 100_000, context)
            assert not outcome.ok
            assert "recursion" not in outcome.result
            assert python_words(outcome.result) == []
    assert "nested too deeply" in outcome.result


@pytest.mark.parametrize(
    "expression",
    ["sqrt(-1)", "log(0)", "log(-1, 2)", "min()", "max(1)", "abs()", "floor(1, 2)", "{1: 2}"],
)
def test_calculator_failures_are_worded(expression: str) -> None:
    with pytest.raises(ExpressionError) as failed:
        calculate(expression)
    for message in both(failed.value):
        assert python_words(message) == [], message
        assert "math domain" not in message
        assert "Dict" not in message
