"""The chat-completions client and provider resolution, over real HTTP to the local fake."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, get_args

import httpx
import pytest

from services.executor.worker.llm.client import ChatClient, ChatResponse, LLMError, ToolCall
from services.executor.worker.llm.providers import (
    ProviderEndpoint,
    ProviderNotConfigured,
    resolve_endpoint,
)
from shared.workflow.providers import Provider
from tests.support.fake_llm import FakeLLM
from tests.support.processes import free_port

KEY = "sk-unit-" + uuid.uuid4().hex
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALC_TOOL = {
    "type": "function",
    "function": {"name": "calc", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def fake_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeLLM]:
    server = FakeLLM(tmp_path_factory.mktemp("fake-llm"), api_key=KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(fake_llm: FakeLLM) -> ProviderEndpoint:
    return ProviderEndpoint("deepseek", fake_llm.base_url, KEY)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> ChatClient:
    return ChatClient(http, max_retries=2, backoff_s=0.01, max_backoff_s=0.05)


def marked(fake_llm: FakeLLM, marker: str) -> list[dict[str, Any]]:
    return [r for r in fake_llm.requests() if marker in json.dumps(r["body"])]


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


class Chunks:
    """An `on_chunk` that remembers what it was given."""

    def __init__(self) -> None:
        self.received: list[str] = []

    async def __call__(self, text: str) -> None:
        self.received.append(text)


# --- answers -------------------------------------------------------------------------------


async def test_a_plain_answer_with_its_usage(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM
) -> None:
    marker = uuid.uuid4().hex[:8]
    messages = [{"role": "system", "content": "be brief"}, *user(f"hello {marker} world")]
    response = await client.chat(
        endpoint, model="deepseek-chat", messages=messages, temperature=0.3, max_tokens=50
    )
    assert response == ChatResponse(
        text=f"ECHO: hello {marker} world",
        tool_calls=[],
        usage={"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
        finish_reason="stop",
        model="deepseek-chat",
    )
    [sent] = marked(fake_llm, marker)
    assert sent["authorization"] == f"Bearer {KEY}"
    assert sent["body"] == {
        "model": "deepseek-chat",
        "messages": messages,
        "temperature": 0.3,
        "max_tokens": 50,
    }


async def test_streamed_chunks_arrive_in_order_and_make_the_text(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM
) -> None:
    marker = uuid.uuid4().hex[:8]
    chunks = Chunks()
    response = await client.chat(
        endpoint, model="m", messages=user(f"stream me {marker}"), top_p=0.5, on_chunk=chunks
    )
    assert response.text == f"ECHO: stream me {marker}"
    assert len(chunks.received) > 3
    assert all(chunks.received)
    assert "".join(chunks.received) == response.text
    assert response.finish_reason == "stop"
    assert response.usage == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    body = marked(fake_llm, marker)[0]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["top_p"] == 0.5


@pytest.mark.parametrize("streaming", [False, True])
async def test_json_mode_asks_for_a_json_object(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM, streaming: bool
) -> None:
    marker = uuid.uuid4().hex[:8]
    response = await client.chat(
        endpoint,
        model="m",
        messages=user(f"分类 {marker}"),
        json_mode=True,
        on_chunk=Chunks() if streaming else None,
    )
    assert json.loads(response.text) == {"echo": f"ECHO: 分类 {marker}"}
    assert marked(fake_llm, marker)[0]["body"]["response_format"] == {"type": "json_object"}


# --- tool calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("streaming", [False, True])
async def test_tool_calls_one_per_turn_until_the_answer(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM, streaming: bool
) -> None:
    marker = uuid.uuid4().hex[:8]
    weather_args = '{"city": "杭州: 西湖", "days": [1, 2]}'
    prompt = f"{marker} [[call=weather:{weather_args}]] [[call=calc:{{}}]]"
    messages: list[dict[str, Any]] = user(prompt)
    chunks = Chunks()
    expected = [ToolCall("call_1", "weather", weather_args), ToolCall("call_2", "calc", "{}")]
    for number, call in enumerate(expected, start=1):
        response = await client.chat(
            endpoint,
            model="m",
            messages=messages,
            tools=[WEATHER_TOOL, CALC_TOOL],
            on_chunk=chunks if streaming else None,
        )
        assert response.tool_calls == [call]
        assert (response.text, response.finish_reason) == ("", "tool_calls")
        assert response.usage["completion_tokens"] >= 1
        messages = [
            *messages,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": f"result {number}"},
        ]
    response = await client.chat(
        endpoint,
        model="m",
        messages=messages,
        tools=[WEATHER_TOOL, CALC_TOOL],
        on_chunk=chunks if streaming else None,
    )
    assert response.tool_calls == []
    assert response.text == "TOOLS: result 1 | result 2"
    assert chunks.received == (list(_pieces(response.text)) if streaming else [])
    first = marked(fake_llm, marker)[0]["body"]
    assert first["tools"] == [WEATHER_TOOL, CALC_TOOL]
    assert first["tool_choice"] == "auto"


def _pieces(text: str) -> Iterator[str]:
    return (text[i : i + 4] for i in range(0, len(text), 4))


# --- refusals and failures -----------------------------------------------------------------


async def test_a_wrong_key_is_refused_at_once_without_showing_the_key(
    client: ChatClient, fake_llm: FakeLLM
) -> None:
    marker = uuid.uuid4().hex[:8]
    wrong = "sk-wrong-" + uuid.uuid4().hex
    endpoint = ProviderEndpoint("deepseek", fake_llm.base_url, wrong)
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user(marker))
    error = caught.value
    assert (error.retryable, error.status_code, error.attempts) == (False, 401, 1)
    assert "refused the API key" in error.render("en")
    assert "401" in error.render("zh")
    assert "Incorrect API key provided" in str(error)
    for text in (error.render("en"), error.render("zh"), str(error), repr(error)):
        assert wrong not in text
        assert KEY not in text
    [sent] = marked(fake_llm, marker)
    assert sent["authorization"] == f"Bearer {wrong}"


async def test_no_key_sends_no_authorization(client: ChatClient, fake_llm: FakeLLM) -> None:
    marker = uuid.uuid4().hex[:8]
    endpoint = ProviderEndpoint("custom", fake_llm.base_url, None)
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user(marker))
    assert caught.value.status_code == 401
    assert "requires an API key" in caught.value.render("en")
    assert marked(fake_llm, marker)[0]["authorization"] is None


async def test_rate_limits_are_retried_inside_the_call(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM
) -> None:
    key = uuid.uuid4().hex[:8]
    response = await client.chat(endpoint, model="m", messages=user(f"hi [[fail=429x2 key={key}]]"))
    assert response.text == "ECHO: hi"
    assert len(marked(fake_llm, key)) == 3


async def test_retries_run_out_into_a_retryable_error(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM
) -> None:
    key = uuid.uuid4().hex[:8]
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user(f"hi [[fail=429x5 key={key}]]"))
    error = caught.value
    assert (error.retryable, error.status_code, error.attempts) == (True, 429, 3)
    assert "429" in error.render("en")
    assert "after 3 attempts" in error.render("en")
    assert "3 次" in error.render("zh")
    assert len(marked(fake_llm, key)) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retryable(
    http: httpx.AsyncClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM, status: int
) -> None:
    key = uuid.uuid4().hex[:8]
    client = ChatClient(http, max_retries=1, backoff_s=0.001)
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user(f"[[fail={status}x9 key={key}]]"))
    assert (caught.value.retryable, caught.value.status_code) == (True, status)
    assert str(status) in caught.value.render("en")
    assert len(marked(fake_llm, key)) == 2


async def test_a_server_error_then_success_streams_fine(
    client: ChatClient, endpoint: ProviderEndpoint
) -> None:
    key = uuid.uuid4().hex[:8]
    chunks = Chunks()
    prompt = f"ok [[fail=503x1 key={key}]]"
    response = await client.chat(endpoint, model="m", messages=user(prompt), on_chunk=chunks)
    assert "".join(chunks.received) == response.text == "ECHO: ok"


@pytest.mark.parametrize("status", [400, 403, 404, 422])
async def test_client_errors_are_not_retried(
    client: ChatClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM, status: int
) -> None:
    key = uuid.uuid4().hex[:8]
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user(f"[[fail={status}x9 key={key}]]"))
    error = caught.value
    assert (error.retryable, error.status_code, error.attempts) == (False, status, 1)
    assert f"HTTP {status}" in error.render("en")
    assert f"scripted failure {status}" in error.render("en")
    assert len(marked(fake_llm, key)) == 1


@pytest.mark.parametrize("how", ["cut", "cut=clean"])
async def test_a_cut_stream_is_retried_then_retryable(
    http: httpx.AsyncClient, endpoint: ProviderEndpoint, fake_llm: FakeLLM, how: str
) -> None:
    marker = uuid.uuid4().hex[:8]
    client = ChatClient(http, max_retries=1, backoff_s=0.001)
    chunks = Chunks()
    with pytest.raises(LLMError) as caught:
        await client.chat(
            endpoint, model="m", messages=user(f"{marker} [[{how}]]"), on_chunk=chunks
        )
    assert caught.value.retryable
    assert caught.value.status_code is None
    assert "cut off" in caught.value.render("en")
    # Each attempt delivered its first chunk before the cut; the retry repeats it.
    assert chunks.received == ["ECHO", "ECHO"]
    assert len(marked(fake_llm, marker)) == 2


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_slow_provider_times_out_retryably(
    client: ChatClient, endpoint: ProviderEndpoint, streaming: bool
) -> None:
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        await client.chat(
            endpoint,
            model="m",
            messages=user("slow [[delay=3]]"),
            on_chunk=Chunks() if streaming else None,
            timeout=0.4,
        )
    assert caught.value.retryable
    assert "0.4s" in caught.value.render("en")
    # The timeout bounds the whole call: no retry may start once it has passed.
    assert time.monotonic() - started < 2


async def test_nobody_listening_is_a_retryable_connect_error(client: ChatClient) -> None:
    endpoint = ProviderEndpoint("vllm", f"http://127.0.0.1:{free_port()}/v1", None)
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user("hi"), timeout=5)
    assert caught.value.retryable
    assert caught.value.attempts == 3
    assert "could not connect" in caught.value.render("en")


async def test_a_wrong_base_url_is_not_found_at_once(client: ChatClient, fake_llm: FakeLLM) -> None:
    endpoint = ProviderEndpoint("custom", fake_llm.base_url + "/nowhere", KEY)
    with pytest.raises(LLMError) as caught:
        await client.chat(endpoint, model="m", messages=user("hi"))
    assert (caught.value.status_code, caught.value.retryable) == (404, False)
    assert "check the model name and base_url" in caught.value.render("en")


@pytest.mark.parametrize(
    "body", [b"<html>busy</html>", b'{"object": "list", "data": []}', b'{"choices": []}']
)
async def test_a_body_that_is_not_a_completion_is_malformed(body: bytes) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mocked:
        endpoint = ProviderEndpoint("custom", "http://provider.test/v1", KEY)
        with pytest.raises(LLMError) as caught:
            await ChatClient(mocked).chat(endpoint, model="m", messages=user("hi"))
    assert caught.value.retryable is False
    assert "malformed" in caught.value.render("en")


async def test_an_echoed_key_is_blanked_out_of_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        return httpx.Response(400, json={"error": {"message": f"bad key {sent} here"}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as mocked:
        endpoint = ProviderEndpoint("openai", "http://provider.test/v1", KEY)
        with pytest.raises(LLMError) as caught:
            await ChatClient(mocked).chat(endpoint, model="m", messages=user("hi"))
    assert KEY not in caught.value.render("en")
    assert "bad key *** here" in caught.value.render("en")


# --- provider resolution -------------------------------------------------------------------


def test_every_provider_name_is_known() -> None:
    env = {"VLLM_BASE_URL": "http://vllm:8000/v1", "CUSTOM_BASE_URL": "http://x/v1"}
    env |= {f"{p.upper()}_API_KEY": "k" for p in get_args(Provider)}
    for provider in get_args(Provider):
        assert resolve_endpoint(provider, environ=env).provider == provider


def test_a_provider_without_its_key_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        resolve_endpoint("deepseek", environ={"DEEPSEEK_API_KEY": " ", "OPENAI_API_KEY": "k"})
    error = caught.value
    assert error.retryable is False
    assert error.render("zh") == "LLM 提供商 deepseek 未配置:请设置 DEEPSEEK_API_KEY"
    assert error.render("en") == "LLM provider deepseek is not configured: set DEEPSEEK_API_KEY"
    with pytest.raises(ProviderNotConfigured, match="VLLM_BASE_URL"):
        resolve_endpoint("vllm", environ={"VLLM_API_KEY": "k"})
    with pytest.raises(ProviderNotConfigured, match="DASHSCOPE_API_KEY"):
        resolve_endpoint("qwen", environ={})


def test_defaults_and_environment_base_urls() -> None:
    assert resolve_endpoint("deepseek", environ={"DEEPSEEK_API_KEY": "k1"}) == ProviderEndpoint(
        "deepseek", "https://api.deepseek.com/v1", "k1"
    )
    env = {"OPENAI_API_KEY": "k2", "OPENAI_BASE_URL": "https://proxy.example/v1/ "}
    assert resolve_endpoint("openai", environ=env) == ProviderEndpoint(
        "openai", "https://proxy.example/v1", "k2"
    )
    assert resolve_endpoint("ollama", environ={}) == ProviderEndpoint(
        "ollama", "http://127.0.0.1:11434/v1", None
    )
    env = {"CUSTOM_BASE_URL": "http://llm.internal/v1/"}
    assert resolve_endpoint("custom", environ=env).base_url == "http://llm.internal/v1"


@pytest.mark.parametrize("provider", ["qwen", "dashscope"])
@pytest.mark.parametrize("prefix", ["QWEN", "DASHSCOPE"])
def test_qwen_and_dashscope_read_each_others_variables(provider: str, prefix: str) -> None:
    endpoint = resolve_endpoint(provider, environ={f"{prefix}_API_KEY": "kq"})
    assert endpoint.base_url == "https://dashscope.aliyuncs.com/compatible-mode/v1"
    assert endpoint.api_key == "kq"
    env = {f"{prefix}_API_KEY": "kq", f"{prefix}_BASE_URL": "https://dashscope-intl.example/v1"}
    assert resolve_endpoint(provider, environ=env).base_url == "https://dashscope-intl.example/v1"


def test_a_node_base_url_elsewhere_never_gets_the_key() -> None:
    env = {"DEEPSEEK_API_KEY": "secret", "DEEPSEEK_BASE_URL": "https://gw.example/v1"}
    elsewhere = resolve_endpoint("deepseek", "https://attacker.example/v1", env)
    assert elsewhere == ProviderEndpoint("deepseek", "https://attacker.example/v1", None)
    same = resolve_endpoint("deepseek", "https://gw.example/v1/", env)
    assert same == ProviderEndpoint("deepseek", "https://gw.example/v1", "secret")
    # The default URL is the configured one when the environment names none.
    default = resolve_endpoint("openai", "https://api.openai.com/v1", {"OPENAI_API_KEY": "s"})
    assert default.api_key == "s"
    # A node's base_url makes a provider usable with no configuration at all, keyless.
    assert resolve_endpoint("vllm", "http://10.0.0.5:8000/v1", {}).api_key is None
    assert resolve_endpoint("openai", "https://other.example/v1", {}).api_key is None


def test_the_key_never_shows_in_an_endpoints_repr() -> None:
    endpoint = resolve_endpoint("deepseek", environ={"DEEPSEEK_API_KEY": "sk-very-secret"})
    assert "sk-very-secret" not in repr(endpoint)
    assert "sk-very-secret" not in str(endpoint)
    assert "deepseek" in repr(endpoint)
