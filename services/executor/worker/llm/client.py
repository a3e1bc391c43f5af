"""A client for OpenAI-compatible chat completions, streaming or not, with retries.

Every provider the platform supports speaks this one protocol, so one client serves them all.
Transient failures (HTTP 429/500/502/503/504, connection failures, timeouts, a stream cut
mid-way) are retried inside `ChatClient.chat` with exponential backoff, honouring a numeric
`Retry-After`; when retries run out the `LLMError` says `retryable=True`, so the node's own
retry policy may try again later. Anything else (a refused key, a bad request, a malformed
answer) fails at once with `retryable=False`: repeating the same request cannot help.

`timeout` bounds the whole call, retries and waits included: a node's timeout is what its
author expects to wait, however many attempts that takes.

When a stream fails after some chunks were delivered and the call is retried, `on_chunk`
receives the text again from the start. Viewers of a live stream may see a repeated prefix;
the returned `ChatResponse` holds only the successful attempt's answer.

The API key is sent in the `Authorization` header and nowhere else: never in a message, a log
line or a repr. Provider error messages are cleaned of it too, in case a server echoes it.
Redirects are not followed: a base URL that redirects could carry the request (and the key)
to a host nobody checked.

A base URL a node chose itself (`ProviderEndpoint.outbound` set) is checked by the outbound
guard before every attempt, and the request goes to the addresses checked, never to a second
DNS answer (`shared.net.pinning`).

What a provider sends is bounded (`ResponseLimits`): the bytes of one response (decompressed,
streamed or not, read piece by piece and never more than the limit), the answer's text, each
tool call's arguments and the number of tool calls. A server at a node's base URL is anybody's;
past a limit the call fails at once, not retryable, saying which limit.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import httpx

from shared.i18n import Language, LocalizedError, Message
from shared.net.bodies import ACCEPT_ENCODING, iter_decoded, read_at_most
from shared.net.outbound import OutboundRefused, check_url
from shared.net.pinning import send_pinned
from shared.text import shortened

if TYPE_CHECKING:
    from services.executor.worker.llm.providers import ProviderEndpoint

log = logging.getLogger("agentflow.executor.llm")

ChunkCallback = Callable[[str], Awaitable[None]]

RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_CONNECT_TIMEOUT_S: Final = 10.0
_DETAIL_CHARS: Final = 500
_USAGE_KEYS: Final = ("prompt_tokens", "completion_tokens", "total_tokens")
_ERROR_BODY_BYTES: Final = 64 * 1024  # of an error answer: enough for its message
_LINE_END: Final = re.compile(r"\r\n|\r|\n")

_KEY_REFUSED = Message(
    "LLM 提供商 {provider} 拒绝了 API 密钥(HTTP {status}):{detail}",
    "the LLM provider {provider} refused the API key (HTTP {status}): {detail}",
)
_KEY_REQUIRED = Message(
    "LLM 提供商 {provider} 需要 API 密钥(HTTP {status}),但此地址不会收到平台的密钥:{detail}",
    "the LLM provider {provider} requires an API key (HTTP {status}), and the platform's key "
    "is not sent to this base URL: {detail}",
)
_FORBIDDEN = Message(
    "LLM 提供商 {provider} 拒绝访问(HTTP {status}):{detail}",
    "the LLM provider {provider} denied access (HTTP {status}): {detail}",
)
_NOT_FOUND = Message(
    "LLM 提供商 {provider} 找不到所请求的资源(HTTP {status}),请检查模型名称和 base_url:{detail}",
    "the LLM provider {provider} found nothing there (HTTP {status}); check the model name "
    "and base_url: {detail}",
)
_REJECTED = Message(
    "LLM 提供商 {provider} 拒绝了请求(HTTP {status}):{detail}",
    "the LLM provider {provider} rejected the request (HTTP {status}): {detail}",
)
_RATE_LIMITED = Message(
    "LLM 提供商 {provider} 限流(HTTP {status}):{detail}",
    "the LLM provider {provider} is rate limiting (HTTP {status}): {detail}",
)
_UNAVAILABLE = Message(
    "LLM 提供商 {provider} 暂时不可用(HTTP {status}):{detail}",
    "the LLM provider {provider} is unavailable (HTTP {status}): {detail}",
)
_CONNECT_FAILED = Message(
    "无法连接 LLM 提供商 {provider}({url}):{detail}",
    "could not connect to the LLM provider {provider} ({url}): {detail}",
)
_NETWORK_FAILED = Message(
    "与 LLM 提供商 {provider} 的连接出错:{detail}",
    "the connection to the LLM provider {provider} failed: {detail}",
)
_TIMED_OUT = Message(
    "LLM 提供商 {provider} 未在 {timeout} 秒内完成回答",
    "the LLM provider {provider} did not answer within {timeout}s",
)
_STREAM_CUT = Message(
    "LLM 提供商 {provider} 的流式回答中途断开:{detail}",
    "the stream from the LLM provider {provider} was cut off: {detail}",
)
_STREAM_ERROR = Message(
    "LLM 提供商 {provider} 在流式回答中报告错误:{detail}",
    "the LLM provider {provider} reported an error mid-stream: {detail}",
)
_MALFORMED = Message(
    "LLM 提供商 {provider} 的回答格式错误:{detail}",
    "the LLM provider {provider} sent a malformed response: {detail}",
)
_BAD_URL = Message(
    "LLM 提供商 {provider} 的 base_url 无效({url}):{detail}",
    "the LLM provider {provider} has an invalid base_url ({url}): {detail}",
)
_TOO_LARGE = Message(
    "LLM 提供商 {provider} 的回答超过 {limit} 字节的上限,已停止读取",
    "the answer of the LLM provider {provider} is larger than the limit of {limit} bytes; "
    "reading stopped",
)
_TEXT_TOO_LONG = Message(
    "LLM 提供商 {provider} 的回答文本超过 {limit} 个字符的上限",
    "the text answered by the LLM provider {provider} is longer than the limit of {limit} "
    "characters",
)
_ARGUMENTS_TOO_LONG = Message(
    "LLM 提供商 {provider} 的工具调用 {name} 的参数超过 {limit} 个字符的上限",
    "the arguments of the tool call {name} from the LLM provider {provider} are longer than "
    "the limit of {limit} characters",
)
_TOO_MANY_CALLS = Message(
    "LLM 提供商 {provider} 一次要求的工具调用超过 {limit} 个",
    "the LLM provider {provider} asked for more than {limit} tool calls at once",
)
_AFTER_ATTEMPTS = Message("(共尝试 {attempts} 次)", " (after {attempts} attempts)")


class LLMError(LocalizedError):
    """A failed model call, with a bilingual message and whether trying again may help.

    `status_code` is the provider's HTTP status when it answered; `retry_after` its numeric
    `Retry-After` (seconds), if any; `attempts` how many requests this call made.
    """

    def __init__(
        self,
        message: Message,
        *,
        retryable: bool,
        status_code: int | None = None,
        retry_after: float | None = None,
        **params: Any,
    ) -> None:
        self.attempts = 1
        super().__init__(message, **params)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after

    def render(self, language: Language) -> str:
        text = self.message.render(language, **self.params)
        if self.attempts > 1:
            text += _AFTER_ATTEMPTS.render(language, attempts=self.attempts)
        return text

    def __str__(self) -> str:
        return self.render("en")


@dataclass(frozen=True)
class ResponseLimits:
    """The most one model answer may hold; beyond any of them the call fails."""

    max_bytes: int = 8 * 1024 * 1024  # of one response body, decompressed
    max_text_chars: int = 1_000_000
    max_tool_argument_chars: int = 256 * 1024  # of each tool call
    max_tool_calls: int = 128


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asks for; `arguments` is its JSON text, unparsed."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatResponse:
    text: str
    tool_calls: list[ToolCall]
    usage: dict[str, int]
    finish_reason: str | None
    model: str


class ChatClient:
    """Chat completions over a shared `httpx.AsyncClient` (its connection pool is reused)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_retries: int = 2,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        limits: ResponseLimits | None = None,
    ) -> None:
        self._http = http
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.limits = limits or ResponseLimits()

    async def chat(
        self,
        endpoint: ProviderEndpoint,
        *,
        model: str,
        messages: list[dict[str, Any]],
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        tools: list[dict[str, Any]] | None = None,
        json_mode: bool = False,
        on_chunk: ChunkCallback | None = None,
        timeout: float = 120.0,
    ) -> ChatResponse:
        """One completion; streamed (text deltas to `on_chunk`) when `on_chunk` is given."""
        body = request_body(
            model=model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            top_p=top_p,
            tools=tools,
            json_mode=json_mode,
            stream=on_chunk is not None,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(endpoint, body, on_chunk, deadline, timeout)
            except LLMError as error:
                error.attempts = attempt
                delay = self._delay(attempt, error.retry_after)
                out_of_time = loop.time() + delay >= deadline
                if not error.retryable or attempt > self.max_retries or out_of_time:
                    raise
                log.warning(
                    "LLM call to %s failed (attempt %d), retrying in %.2fs: %s",
                    endpoint.provider, attempt, delay, error,
                )  # fmt: skip
                await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff, or the provider's own `Retry-After`; never above the cap."""
        wanted = retry_after if retry_after is not None else self.backoff_s * 2 ** (attempt - 1)
        return max(0.0, min(self.max_backoff_s, wanted))

    async def _attempt(
        self,
        endpoint: ProviderEndpoint,
        body: dict[str, Any],
        on_chunk: ChunkCallback | None,
        deadline: float,
        timeout: float,
    ) -> ChatResponse:
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        limits = httpx.Timeout(remaining, connect=min(_CONNECT_TIMEOUT_S, remaining))
        url = f"{endpoint.base_url}/chat/completions"
        try:
            # httpx's timeouts bound each read; this bounds a stream that trickles forever.
            async with asyncio.timeout(remaining):
                response = await self._send(endpoint, url, body, limits)
                try:
                    return await self._read(endpoint, response, body["model"], on_chunk)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMError(
                _TIMED_OUT, retryable=True, provider=endpoint.provider, timeout=f"{timeout:g}"
            ) from exc
        except httpx.TransportError as exc:
            raise transport_error(endpoint, exc) from exc
        except httpx.DecodingError as exc:
            raise _malformed(endpoint, str(exc)) from exc

    async def _send(
        self, endpoint: ProviderEndpoint, url: str, body: dict[str, Any], limits: httpx.Timeout
    ) -> httpx.Response:
        """The streamed response; to the checked addresses when the base URL is a node's."""
        try:
            request = self._http.build_request(
                "POST", url, json=body, headers=_headers(endpoint), timeout=limits
            )
        except httpx.InvalidURL as exc:
            raise transport_error(endpoint, httpx.UnsupportedProtocol(str(exc))) from exc
        # Cookies collected from other users' providers stay out of this request.
        request.headers.pop("cookie", None)
        request.headers["accept-encoding"] = ACCEPT_ENCODING
        if endpoint.outbound is None:
            return await self._http.send(request, stream=True, follow_redirects=False)
        try:
            addresses = await check_url(request.url, endpoint.outbound)
        except OutboundRefused as exc:
            raise LLMError(exc.message, retryable=False, **exc.params) from exc
        return await send_pinned(self._http, request, addresses)

    async def _read(
        self,
        endpoint: ProviderEndpoint,
        response: httpx.Response,
        model: str,
        on_chunk: ChunkCallback | None,
    ) -> ChatResponse:
        if not response.is_success:
            content, _ = await read_at_most(response, min(_ERROR_BODY_BYTES, self.limits.max_bytes))
            raise status_error(endpoint, response, content)
        if on_chunk is None:
            content, more = await read_at_most(response, self.limits.max_bytes)
            if more:
                raise _too_large(endpoint, self.limits)
            return parse_completion(endpoint, content, model, self.limits)
        return await read_stream(endpoint, response, on_chunk, model, self.limits)


def request_body(
    *,
    model: str,
    messages: list[dict[str, Any]],
    temperature: float | None,
    max_tokens: int | None,
    top_p: float | None,
    tools: list[dict[str, Any]] | None,
    json_mode: bool,
    stream: bool,
) -> dict[str, Any]:
    """The request as OpenAI defines it; options left unset are left to the provider."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    optional = {"temperature": temperature, "max_tokens": max_tokens, "top_p": top_p}
    body.update({name: value for name, value in optional.items() if value is not None})
    if tools:
        body["tools"] = tools
        body["tool_choice"] = "auto"
    if json_mode:
        body["response_format"] = {"type": "json_object"}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _headers(endpoint: ProviderEndpoint) -> dict[str, str]:
    if endpoint.api_key:
        return {"Authorization": f"Bearer {endpoint.api_key}"}
    return {}


def _clean(endpoint: ProviderEndpoint, text: str) -> str:
    """Text fit for a message: never the key (servers may echo it), never unboundedly long."""
    if endpoint.api_key:
        text = text.replace(endpoint.api_key, "***")
    text = " ".join(text.split())
    return shortened(text, _DETAIL_CHARS)


def _display_url(base_url: str) -> str:
    """The base URL without credentials or query, which may hold secrets."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        return "?"
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _provider_message(response: httpx.Response, content: bytes) -> str:
    """The provider's own explanation: OpenAI's `{"error": {"message": ...}}` or the text."""
    text = content.decode(response.encoding or "utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text or response.reason_phrase
    return _error_text(data) or text or response.reason_phrase


def _error_text(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    error = data.get("error", data)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for key in ("message", "detail", "msg"):
            if isinstance(error.get(key), str):
                return str(error[key])
    return None


def _retry_after(response: httpx.Response) -> float | None:
    """A numeric `Retry-After` in seconds; HTTP dates are rare from LLM APIs and ignored."""
    try:
        value = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if value >= 0 else None


def status_error(endpoint: ProviderEndpoint, response: httpx.Response, content: bytes) -> LLMError:
    """The error for a non-2xx answer (`content`: the start of its body), retryable only for
    rate limits and server trouble."""
    status = response.status_code
    params: dict[str, Any] = {
        "provider": endpoint.provider,
        "status": status,
        "detail": _clean(endpoint, _provider_message(response, content)),
    }
    if status in RETRYABLE_STATUSES:
        message = _RATE_LIMITED if status == 429 else _UNAVAILABLE
        retry_after = _retry_after(response)
        return LLMError(
            message, retryable=True, status_code=status, retry_after=retry_after, **params
        )
    if status == 401:
        message = _KEY_REFUSED if endpoint.api_key else _KEY_REQUIRED
    elif status == 403:
        message = _FORBIDDEN
    elif status == 404:
        message = _NOT_FOUND
    else:
        message = _REJECTED
    return LLMError(message, retryable=False, status_code=status, **params)


# What went wrong when an exception has no text of its own: in words, never its class name.
_FAILURE_WORDS: Final[tuple[tuple[type[Exception], Message], ...]] = (
    (
        httpx.UnsupportedProtocol,
        Message("只支持 http 和 https 地址", "only http and https URLs work"),
    ),
    (httpx.ConnectError, Message("无法建立连接", "no connection could be made")),
    (
        httpx.RemoteProtocolError,
        Message(
            "对方提前关闭了连接,或没有按 HTTP 协议回答",
            "the server closed the connection early or did not answer in HTTP",
        ),
    ),
    (
        httpx.ReadError,
        Message("读取回答时连接中断", "the connection broke while reading the answer"),
    ),
    (httpx.WriteError, Message("发送请求时连接中断", "the connection broke while sending")),
    (httpx.ProxyError, Message("代理服务器出错", "the proxy failed")),
)
_NETWORK_TROUBLE = Message("网络出错", "a network error")
_ENDED_EARLY = Message("流在 [DONE] 之前就结束了", "the stream ended before [DONE]")


def what_failed(endpoint: ProviderEndpoint, exc: Exception) -> str | Message:
    """The exception's own text, cleaned, or when it has none, what happened in words."""
    text = str(exc)
    if text.strip():
        return _clean(endpoint, text)
    for kind, words in _FAILURE_WORDS:
        if isinstance(exc, kind):
            return words
    return _NETWORK_TROUBLE


def transport_error(endpoint: ProviderEndpoint, exc: httpx.TransportError) -> LLMError:
    """Connection trouble is worth retrying; a URL httpx cannot use is not."""
    detail = what_failed(endpoint, exc)
    url = _display_url(endpoint.base_url)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return LLMError(
            _BAD_URL, retryable=False, provider=endpoint.provider, url=url, detail=detail
        )
    if isinstance(exc, httpx.ConnectError):
        return LLMError(
            _CONNECT_FAILED, retryable=True, provider=endpoint.provider, url=url, detail=detail
        )
    return LLMError(_NETWORK_FAILED, retryable=True, provider=endpoint.provider, detail=detail)


def _malformed(endpoint: ProviderEndpoint, detail: str) -> LLMError:
    return LLMError(
        _MALFORMED, retryable=False, provider=endpoint.provider, detail=_clean(endpoint, detail)
    )


def _too_large(endpoint: ProviderEndpoint, limits: ResponseLimits) -> LLMError:
    return LLMError(_TOO_LARGE, retryable=False, provider=endpoint.provider, limit=limits.max_bytes)


def _check_answer(
    endpoint: ProviderEndpoint,
    limits: ResponseLimits,
    text_chars: int,
    calls: list[tuple[str, int]],
) -> None:
    """LLMError when an answer (whole, or as far as it has come) is over a limit; `calls` are
    the tool calls' names and argument lengths."""
    provider = endpoint.provider
    if text_chars > limits.max_text_chars:
        raise LLMError(
            _TEXT_TOO_LONG, retryable=False, provider=provider, limit=limits.max_text_chars
        )
    if len(calls) > limits.max_tool_calls:
        raise LLMError(
            _TOO_MANY_CALLS, retryable=False, provider=provider, limit=limits.max_tool_calls
        )
    for name, argument_chars in calls:
        if argument_chars > limits.max_tool_argument_chars:
            raise LLMError(
                _ARGUMENTS_TOO_LONG,
                retryable=False,
                provider=provider,
                name=_clean(endpoint, name[:100]),
                limit=limits.max_tool_argument_chars,
            )


def parse_usage(raw: Any) -> dict[str, int]:
    """The three token counts, 0 for any the provider did not send."""
    source = raw if isinstance(raw, dict) else {}
    usage = {key: _count(source.get(key)) for key in _USAGE_KEYS}
    if not usage["total_tokens"]:
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return usage


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _arguments_text(arguments: Any) -> str:
    # Some servers (older ollama) send the arguments as an object rather than JSON text.
    if isinstance(arguments, str):
        return arguments
    if arguments is None:
        return ""
    return json.dumps(arguments, ensure_ascii=False)


def _parse_tool_calls(raw: Any) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for position, item in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        function = function if isinstance(function, dict) else {}
        calls.append(
            ToolCall(
                id=str(item.get("id") or f"call_{position + 1}"),
                name=str(function.get("name") or ""),
                arguments=_arguments_text(function.get("arguments")),
            )
        )
    return calls


def parse_completion(
    endpoint: ProviderEndpoint,
    content: bytes,
    model: str,
    limits: ResponseLimits | None = None,
) -> ChatResponse:
    """A non-streamed answer; anything but a completion with a choice is malformed, anything
    over `limits` an error that says which limit."""
    try:
        data = json.loads(content)
    except ValueError:
        raise _malformed(endpoint, f"not JSON: {content[:200]!r}") from None
    if not isinstance(data, dict):
        raise _malformed(endpoint, "not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        detail = _error_text(data) if "error" in data else None
        raise _malformed(endpoint, detail or "no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _malformed(endpoint, "the choice has no message")
    finish_reason = choices[0].get("finish_reason")
    text = _content_text(message.get("content"))
    calls = _parse_tool_calls(message.get("tool_calls"))
    lengths = [(call.name, len(call.arguments)) for call in calls]
    _check_answer(endpoint, limits or ResponseLimits(), len(text), lengths)
    return ChatResponse(
        text=text,
        tool_calls=calls,
        usage=parse_usage(data.get("usage")),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        model=str(data.get("model") or model),
    )


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    argument_chars: int = 0


@dataclass
class _StreamState:
    """What the chunks of one stream have said so far."""

    model: str
    limits: ResponseLimits = field(default_factory=ResponseLimits)
    text: list[str] = field(default_factory=list)
    text_chars: int = 0
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    done: bool = False

    def add_tool_deltas(self, deltas: Any) -> None:
        """Tool calls arrive in pieces keyed by `index`: id and name first, then arguments."""
        for position, delta in enumerate(deltas if isinstance(deltas, list) else []):
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            call = self.calls.setdefault(
                index if isinstance(index, int) else position, _PartialCall()
            )
            function = delta.get("function")
            function = function if isinstance(function, dict) else {}
            if isinstance(delta.get("id"), str) and not call.id:
                call.id = str(delta["id"])
            if isinstance(function.get("name"), str) and not call.name:
                call.name = str(function["name"])
            if function.get("arguments") is not None:
                piece = _arguments_text(function["arguments"])
                call.arguments.append(piece)
                call.argument_chars += len(piece)

    def check(self, endpoint: ProviderEndpoint) -> None:
        """LLMError as soon as what came so far is over a limit (before it grows further)."""
        lengths = [(call.name, call.argument_chars) for call in self.calls.values()]
        _check_answer(endpoint, self.limits, self.text_chars, lengths)

    def response(self) -> ChatResponse:
        calls = [
            ToolCall(id=c.id or f"call_{i + 1}", name=c.name, arguments="".join(c.arguments))
            for i, c in sorted(self.calls.items())
        ]
        return ChatResponse(
            text="".join(self.text),
            tool_calls=calls,
            usage=self.usage or parse_usage(None),
            finish_reason=self.finish_reason,
            model=self.model,
        )


def _sse_data(line: str) -> str | None:
    """The payload of an SSE `data:` line; None for blanks, comments and other fields."""
    if not line.startswith("data:"):
        return None
    return line[len("data:") :].strip()


async def _lines(
    endpoint: ProviderEndpoint, response: httpx.Response, limits: ResponseLimits
) -> AsyncIterator[str]:
    """The body's lines (CR, LF or CRLF ends), never more than `limits.max_bytes` read.

    A line is held until its end arrives, so one endless line is bounded by the same limit."""
    decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")(errors="replace")
    pending: list[str] = []
    size = 0
    async for piece in iter_decoded(response):
        size += len(piece)
        if size > limits.max_bytes:
            raise _too_large(endpoint, limits)
        parts = _LINE_END.split(decoder.decode(piece))
        for part in parts[:-1]:
            pending.append(part)
            yield "".join(pending)
            pending.clear()
        pending.append(parts[-1])
    pending.append(decoder.decode(b"", final=True))
    if any(pending):
        yield "".join(pending)


async def read_stream(
    endpoint: ProviderEndpoint,
    response: httpx.Response,
    on_chunk: ChunkCallback,
    model: str,
    limits: ResponseLimits | None = None,
) -> ChatResponse:
    """Server-sent chunks until `data: [DONE]`; text deltas go to `on_chunk` as they come.

    A stream that stops before `[DONE]` and before any `finish_reason` was cut: retryable.
    One over `limits` stops being read at once.
    """
    state = _StreamState(model=model, limits=limits or ResponseLimits())
    try:
        async for line in _lines(endpoint, response, state.limits):
            payload = _sse_data(line)
            if payload is None or not payload:
                continue
            if payload == "[DONE]":
                state.done = True
                break
            await _apply_chunk(endpoint, state, payload, on_chunk)
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        detail = what_failed(endpoint, exc)
        raise LLMError(
            _STREAM_CUT, retryable=True, provider=endpoint.provider, detail=detail
        ) from exc
    if not state.done and state.finish_reason is None:
        raise LLMError(
            _STREAM_CUT,
            retryable=True,
            provider=endpoint.provider,
            detail=_ENDED_EARLY,
        )
    return state.response()


async def _apply_chunk(
    endpoint: ProviderEndpoint, state: _StreamState, payload: str, on_chunk: ChunkCallback
) -> None:
    try:
        chunk = json.loads(payload)
    except ValueError:
        raise _malformed(endpoint, f"a stream chunk is not JSON: {payload[:200]}") from None
    if not isinstance(chunk, dict):
        raise _malformed(endpoint, "a stream chunk is not a JSON object")
    if chunk.get("error") is not None:
        detail = _clean(endpoint, _error_text(chunk) or json.dumps(chunk["error"]))
        raise LLMError(_STREAM_ERROR, retryable=True, provider=endpoint.provider, detail=detail)
    if isinstance(chunk.get("model"), str) and chunk["model"]:
        state.model = chunk["model"]
    if isinstance(chunk.get("usage"), dict):
        state.usage = parse_usage(chunk["usage"])
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return
    choice = choices[0]
    delta = choice.get("delta")
    delta = delta if isinstance(delta, dict) else {}
    text = _content_text(delta.get("content"))
    state.text_chars += len(text)
    state.add_tool_deltas(delta.get("tool_calls"))
    state.check(endpoint)  # before the text is passed on: viewers see no more than the limit
    if text:
        state.text.append(text)
        await on_chunk(text)
    if isinstance(choice.get("finish_reason"), str):
        state.finish_reason = choice["finish_reason"]
