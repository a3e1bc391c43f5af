"""What a model server sends is bounded: response bytes, text, tool calls and their arguments;
and a node's own base URL is connected to at the address the outbound guard checked.

A real local server plays a hostile provider: its answers never end (until SERVER_CAP, so a
client without limits finishes too, with the wrong error), or are a gzip bomb. The client must
stop at its limit with an error saying which, having read little, its memory bounded.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from services.executor.node_run import NodeRunError
from services.executor.worker.llm.client import ChatClient, LLMError, ResponseLimits
from services.executor.worker.llm.providers import ProviderEndpoint
from services.executor.worker.runners.context import NodeServices
from services.executor.worker.runners.llm import run_llm
from shared.net.outbound import IPAddress, OutboundPolicy
from shared.workflow.nodes import LLMData
from shared.workflow.references import RuntimeContext
from tests.support.processes import free_port

SERVER_CAP = 64 * 1024 * 1024  # the most any answer sends, should the client never hang up
SMALL = ResponseLimits(
    max_bytes=1024 * 1024, max_text_chars=50_000, max_tool_argument_chars=20_000, max_tool_calls=8
)
BOMB = gzip.compress(b" " * (100 * 1024 * 1024), compresslevel=9)
ALLOWED = ipaddress.ip_address("127.0.0.2")
FORBIDDEN = ipaddress.ip_address("127.0.0.1")


def _sse(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def _completion(text: str, tool_calls: list[dict[str, Any]] | None = None) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return json.dumps({"choices": [{"message": message, "finish_reason": "stop"}]}).encode()


def _call(index: int, arguments: str) -> dict[str, Any]:
    function = {"name": "calc", "arguments": arguments}
    return {"index": index, "id": f"c{index}", "type": "function", "function": function}


ARGUMENTS = {"arguments": "1+"}
# Each endless answer: what it starts with, and what it repeats.
ENDLESS = {
    "json": (b'{"choices": [{"message": {"content": "', b"x" * 65536),
    "text": (b"", _sse({"choices": [{"delta": {"content": "y" * 1000}}]})),
    "line": (b"data: ", b"z" * 65536),
    "args": (
        _sse({"choices": [{"delta": {"tool_calls": [_call(0, "")]}}]}),
        _sse({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": ARGUMENTS}]}}]}),
    ),
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        route = self.path.split("/")[1]
        self.server.seen.append((route, self.headers.get("host")))
        if route in ENDLESS:
            self._endless(route, *ENDLESS[route])
        elif route == "bomb":
            self._send(BOMB, {"content-encoding": "gzip"})
        elif route == "many-calls":
            calls = [_call(i, "{}") for i in range(200)]
            self._send(_completion("", calls), {})
        else:
            self._send(_completion(f"served by {self.server.name}"), {})

    def _endless(self, route: str, head: bytes, repeated: bytes) -> None:
        # HTTP/1.0 without content-length: the answer lasts until the server closes.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        try:
            self.wfile.write(head)
            while self.server.sent[route] < SERVER_CAP:
                self.wfile.write(repeated)
                self.server.sent[route] += len(repeated)
        except OSError:
            return  # the client hung up

    def _send(self, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            return

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: IPAddress, port: int, name: str) -> None:
        super().__init__((str(address), port), _Handler)
        self.name = name
        self.sent = dict.fromkeys(ENDLESS, 0)
        self.seen: list[tuple[str, str | None]] = []


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[_Server, _Server]]:
    """The provider on 127.0.0.2 and, on the same port, a forbidden one on 127.0.0.1."""
    for _ in range(20):
        port = free_port()
        try:
            allowed = _Server(ALLOWED, port, "allowed")
        except OSError:
            continue
        try:
            forbidden = _Server(FORBIDDEN, port, "forbidden")
        except OSError:
            allowed.server_close()
            continue
        break
    else:
        raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")
    for server in (allowed, forbidden):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield allowed, forbidden
    for server in (allowed, forbidden):
        server.shutdown()
        server.server_close()


@pytest.fixture
def provider(servers: tuple[_Server, _Server]) -> _Server:
    allowed, forbidden = servers
    allowed.sent = dict.fromkeys(ENDLESS, 0)
    allowed.seen.clear()
    forbidden.seen.clear()
    return allowed


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def endpoint(provider: _Server, route: str) -> ProviderEndpoint:
    return ProviderEndpoint(
        "custom", f"http://{ALLOWED}:{provider.server_address[1]}/{route}/v1", None
    )


class Chunks:
    def __init__(self) -> None:
        self.received: list[str] = []

    async def __call__(self, text: str) -> None:
        self.received.append(text)


async def _fails(
    client: ChatClient, target: ProviderEndpoint, *, stream: bool = False
) -> tuple[LLMError, Chunks]:
    chunks = Chunks()
    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        await client.chat(
            target,
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            on_chunk=chunks if stream else None,
            timeout=30,
        )
    assert time.monotonic() - started < 10  # stopped at the limit, not at the timeout
    assert caught.value.retryable is False
    assert caught.value.attempts == 1
    return caught.value, chunks


async def test_an_endless_answer_stops_at_the_byte_limit(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    client = ChatClient(http, max_retries=2, limits=SMALL)
    error, _ = await _fails(client, endpoint(provider, "json"))
    assert "larger than the limit of 1048576 bytes" in error.render("en")
    assert "1048576 字节" in error.render("zh")
    assert provider.sent["json"] < SERVER_CAP  # the client hung up


async def test_the_default_limit_stops_an_endless_answer(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    error, _ = await _fails(ChatClient(http), endpoint(provider, "json"))
    assert f"limit of {8 * 1024 * 1024} bytes" in error.render("en")
    assert provider.sent["json"] < SERVER_CAP


async def test_an_endless_stream_of_text_stops_at_the_text_limit(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    error, chunks = await _fails(
        ChatClient(http, limits=SMALL), endpoint(provider, "text"), stream=True
    )
    assert "longer than the limit of 50000 characters" in error.render("en")
    assert "50000 个字符" in error.render("zh")
    # Viewers were given no more than the limit.
    assert sum(map(len, chunks.received)) <= 50_000
    assert provider.sent["text"] < SERVER_CAP


async def test_one_endless_line_stops_at_the_byte_limit(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    tracemalloc.start()
    try:
        error, _ = await _fails(
            ChatClient(http, limits=SMALL), endpoint(provider, "line"), stream=True
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "larger than the limit of 1048576 bytes" in error.render("en")
    assert peak < 16 * 1024 * 1024
    assert provider.sent["line"] < SERVER_CAP


async def test_endless_tool_arguments_stop_at_their_limit(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    error, _ = await _fails(ChatClient(http, limits=SMALL), endpoint(provider, "args"), stream=True)
    assert "the tool call calc" in error.render("en")
    assert "longer than the limit of 20000 characters" in error.render("en")
    assert provider.sent["args"] < SERVER_CAP


async def test_too_many_tool_calls_are_refused(http: httpx.AsyncClient, provider: _Server) -> None:
    error, _ = await _fails(ChatClient(http, limits=SMALL), endpoint(provider, "many-calls"))
    assert "more than 8 tool calls" in error.render("en")


async def test_a_gzip_bomb_stops_at_the_byte_limit_with_bounded_memory(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    tracemalloc.start()
    try:
        error, _ = await _fails(ChatClient(http, limits=SMALL), endpoint(provider, "bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "larger than the limit of 1048576 bytes" in error.render("en")
    # Inflating a 64 KiB read whole, as httpx does, would take 60 MiB and more at once.
    assert peak < 16 * 1024 * 1024


# -- through the llm node ------------------------------------------------------------------


class Resolver:
    """Answers `localhost` with the allowed address; the system would say 127.0.0.1."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        return [ALLOWED]


def _services(http: httpx.AsyncClient, resolver: Resolver) -> NodeServices:
    policy = OutboundPolicy.from_strings(["127.0.0.2/32"], resolver=resolver)
    return NodeServices(http=http, chat=ChatClient(http, limits=SMALL), outbound=policy, environ={})


def _context() -> RuntimeContext:
    return RuntimeContext(input_data={}, node_types={}, records={}, upstream=(), loops=())


async def test_a_node_base_url_is_connected_at_the_checked_address(
    http: httpx.AsyncClient, provider: _Server, servers: tuple[_Server, _Server]
) -> None:
    resolver = Resolver()
    port = provider.server_address[1]
    config = LLMData(
        provider="custom", model="m", base_url=f"http://localhost:{port}/plain/v1", prompt="hi",
        stream=False,
    )  # fmt: skip
    result = await run_llm(config, _context(), _services(http, resolver), None)
    assert result.output["text"] == "served by allowed"
    assert provider.seen == [("plain", f"localhost:{port}")]
    assert servers[1].seen == []  # the system's answer, 127.0.0.1, was never used
    assert resolver.asked.count("localhost") >= 1


async def test_an_llm_node_fails_with_a_clear_reason_at_a_limit(
    http: httpx.AsyncClient, provider: _Server
) -> None:
    port = provider.server_address[1]
    config = LLMData(
        provider="custom", model="m", base_url=f"http://localhost:{port}/text/v1", prompt="hi"
    )
    chunks = Chunks()
    with pytest.raises(NodeRunError) as caught:
        await run_llm(config, _context(), _services(http, Resolver()), chunks)
    assert caught.value.retryable is False
    assert "longer than the limit of 50000 characters" in caught.value.render("en")
    assert "超过 50000 个字符的上限" in caught.value.render("zh")
