"""A local server speaking OpenAI's chat-completions protocol: the one honest fake.

No model provider is reachable from the tests, so the platform's LLM calls go, over real HTTP,
to this server. It answers deterministically, scripted by directives in the LAST user message
(directives are removed from the text it echoes):

- `[[delay=S]]`: wait S seconds (float) before answering (streaming: before the first chunk).
- `[[fail=CODExN key=K]]`: the first N requests carrying key K answer with HTTP CODE and an
  OpenAI error body (429 with `Retry-After: 0`); later ones succeed. Counters are per key.
- `[[call=NAME:JSON_ARGS]]` (with `tools` in the request): one tool call per turn, in order.
  With k `tool` messages in the conversation the (k+1)-th call is made; once every call is
  answered the text is `"TOOLS: " + " | ".join(<tool message contents>)`.
- `[[cut]]`: break the connection after the first content chunk of a stream;
  `[[cut=clean]]`: end the stream there cleanly, but without a finish_reason or `[DONE]`.

The answer is otherwise `"ECHO: " + <the last user message without directives, stripped>`,
wrapped as `{"echo": ...}` JSON when `response_format` is json_object. Usage counts words.
`--api-key K` makes requests without `Authorization: Bearer K` fail with 401.

`GET /_requests` lists every chat request received (`{"body", "authorization", "ended"}`),
recorded on arrival, before any delay or failure; `DELETE /_requests` forgets them. `ended` is
None while the call is under way, then how it ended: `answered` (the whole answer was
handed to the connection), `refused` (an error status, scripted or not), `cut` (as scripted)
or `abandoned` (the client went away mid-stream). Tests wait on it for "the call ended".

Run as `python -m tests.support.fake_llm --port N [--api-key K]`; tests use `FakeLLM`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.support.processes import ManagedProcess, _wait_for_port, free_port

DIRECTIVE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_FAIL = re.compile(r"(\d{3})(?:\s*x\s*(\d+))?(?:\s+key=(\S+))?\s*$")
PIECE = 4  # characters per streamed content or arguments chunk


class StreamCut(Exception):
    """Raised inside a stream to break the connection, as a crashing provider would."""


@dataclass
class Script:
    """What the directives of the last user message ask for."""

    text: str
    delay: float = 0.0
    fail: tuple[int, int, str] | None = None  # status, how many times, counter key
    calls: list[tuple[str, str]] = field(default_factory=list)
    cut: str | None = None  # "abrupt" or "clean"


def content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def parse_script(messages: list[Any]) -> Script:
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    last = content_text(users[-1].get("content")) if users else ""
    script = Script(text=DIRECTIVE.sub("", last).strip())
    for directive in DIRECTIVE.findall(last):
        name, _, value = directive.partition("=")
        name = name.strip()
        if name == "delay":
            script.delay = float(value)
        elif name == "fail" and (match := _FAIL.match(value.strip())):
            status, times, key = match.groups()
            script.fail = (int(status), int(times or 1), key or "")
        elif name == "call":
            tool, _, arguments = value.partition(":")
            script.calls.append((tool.strip(), arguments.strip()))
        elif name == "cut":
            script.cut = "clean" if value.strip() == "clean" else "abrupt"
    return script


def words(text: str) -> int:
    return len(text.split())


@dataclass
class Turn:
    """The model's answer: either text or one tool call."""

    text: str | None
    call: dict[str, Any] | None = None


def plan_turn(body: dict[str, Any], script: Script) -> Turn:
    messages = body["messages"]
    answers = [content_text(m.get("content")) for m in messages if m.get("role") == "tool"]
    if body.get("tools") and script.calls:
        k = len(answers)
        if k < len(script.calls):
            name, arguments = script.calls[k]
            return Turn(
                None,
                {
                    "id": f"call_{k + 1}",
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                },
            )
        text = "TOOLS: " + " | ".join(answers)
    else:
        text = "ECHO: " + script.text
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        text = json.dumps({"echo": text}, ensure_ascii=False)
    return Turn(text)


def usage_of(body: dict[str, Any], turn: Turn) -> dict[str, int]:
    prompt = sum(words(content_text(m.get("content"))) for m in body["messages"])
    answer = turn.text if turn.call is None else turn.call["function"]["arguments"]
    completion = max(1, words(answer or ""))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def openai_error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    headers = {"Retry-After": "0"} if status == 429 else None
    return JSONResponse(
        {"error": {"message": message, "type": kind, "code": None}}, status, headers=headers
    )


class FakeProvider:
    """The server's state: what it received and how often each failure key was seen."""

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key
        self.received: list[dict[str, Any]] = []
        self.failures: dict[str, int] = {}

    def app(self) -> ASGIApp:
        routes = [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/_requests", self.requests, methods=["GET", "DELETE"]),
        ]
        return _CutQuietly(Starlette(routes=routes))

    async def requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.received.clear()
        return JSONResponse(self.received)

    async def chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return openai_error(400, "the body is not JSON")
        authorization = request.headers.get("authorization")
        entry: dict[str, Any] = {"body": body, "authorization": authorization, "ended": None}
        self.received.append(entry)
        refusal = self._refusal(body, authorization)
        if refusal is not None:
            entry["ended"] = "refused"
            return refusal
        script = parse_script(body["messages"])
        turn = plan_turn(body, script)
        model = str(body.get("model", ""))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            chunks = stream(model, turn, usage_of(body, turn), script, include_usage)
            cut = script.cut is not None and turn.call is None and bool(turn.text)
            return StreamingResponse(
                _noting_end(chunks, entry, cut=cut), media_type="text/event-stream"
            )
        await asyncio.sleep(script.delay)
        answer = JSONResponse(completion(model, turn, usage_of(body, turn)))
        entry["ended"] = "answered"
        return answer

    def _refusal(self, body: Any, authorization: str | None) -> Response | None:
        """The error answer the request gets instead of a completion, if any."""
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return openai_error(400, "messages is required")
        if not all(isinstance(m, dict) for m in body["messages"]):
            return openai_error(400, "every message must be an object")
        script = parse_script(body["messages"])
        if script.fail is not None and self._should_fail(script.fail):
            status = script.fail[0]
            kind = "rate_limit_error" if status == 429 else "scripted_error"
            return openai_error(status, f"scripted failure {status}", kind)
        return None

    def _should_fail(self, fail: tuple[int, int, str]) -> bool:
        _, times, key = fail
        seen = self.failures.get(key, 0)
        self.failures[key] = seen + 1
        return seen < times


async def _noting_end(
    chunks: AsyncIterator[bytes], entry: dict[str, Any], *, cut: bool
) -> AsyncIterator[bytes]:
    """`chunks`, recording in `entry` how the stream ended (`cut`: it ends early, scripted)."""
    outcome = "abandoned"  # closed from outside: the client went away mid-stream
    try:
        async for chunk in chunks:
            yield chunk
        outcome = "cut" if cut else "answered"
    except StreamCut:
        outcome = "cut"
        raise
    finally:
        entry["ended"] = entry["ended"] or outcome


class _CutQuietly:
    """Lets a scripted cut end the response unfinished without an error traceback in the log
    (uvicorn then closes the connection mid-body, which is the point)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(StreamCut):
            await self.app(scope, receive, send)


def completion(model: str, turn: Turn, usage: dict[str, int]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text}
    if turn.call is not None:
        message["tool_calls"] = [turn.call]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if turn.call else "stop",
            }
        ],
        "usage": usage,
    }


def pieces(text: str) -> list[str]:
    return [text[i : i + PIECE] for i in range(0, len(text), PIECE)]


def sse(data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def stream(
    model: str, turn: Turn, usage: dict[str, int], script: Script, include_usage: bool
) -> AsyncIterator[bytes]:
    """Chunks as OpenAI sends them: role, content or tool-call pieces, finish, usage, DONE."""
    await asyncio.sleep(script.delay)
    base = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return sse({**base, "choices": [choice]})

    if turn.call is None:
        yield chunk({"role": "assistant", "content": ""})
        for piece in pieces(turn.text or ""):
            yield chunk({"content": piece})
            if script.cut == "clean":
                return
            if script.cut == "abrupt":
                raise StreamCut("the fake provider cuts the stream, as scripted")
    else:
        function = turn.call["function"]
        first = {"index": 0, "id": turn.call["id"], "type": "function",
                 "function": {"name": function["name"], "arguments": ""}}  # fmt: skip
        yield chunk({"role": "assistant", "content": None, "tool_calls": [first]})
        for piece in pieces(function["arguments"]):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
    yield chunk({}, "tool_calls" if turn.call else "stop")
    if include_usage:
        yield sse({**base, "choices": [], "usage": usage})
    yield sse("[DONE]")


class FakeLLM(ManagedProcess):
    """The fake provider as a process of its own, at `base_url` (OpenAI style, with /v1)."""

    def __init__(self, workdir: Path, api_key: str | None = None) -> None:
        port = free_port()
        argv = [sys.executable, "-m", "tests.support.fake_llm", "--port", str(port)]
        if api_key is not None:
            argv += ["--api-key", api_key]
        super().__init__("fake-llm", argv, dict(os.environ), port, workdir)
        self.api_key = api_key
        self.root_url = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.root_url}/v1"

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        _wait_for_port(self.port, 15, self.proc, self.log_path)

    def requests(self) -> list[dict[str, Any]]:
        """Every chat request received so far: `{"body": ..., "authorization": ...}`."""
        response = httpx.get(f"{self.root_url}/_requests", timeout=5)
        response.raise_for_status()
        received: list[dict[str, Any]] = response.json()
        return received

    def clear(self) -> None:
        httpx.delete(f"{self.root_url}/_requests", timeout=5).raise_for_status()

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The chat requests whose body contains `marker` (tests tag their prompts with one)."""
        return [r for r in self.requests() if marker in json.dumps(r["body"], ensure_ascii=False)]

    def wait_ended(self, marker: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every call carrying `marker` (at least one) has ended, and return them;
        fails the test if that takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            calls = self.requests_with(marker)
            if calls and all(call["ended"] for call in calls):
                return calls
            assert time.monotonic() < deadline, f"calls with {marker} still going: {calls}"
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    app = FakeProvider(args.api_key).app()
    # Calls still sleeping on a `[[delay]]` must not hold up the tests' teardown.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
