"""Forwarding a public request to its upstream: a raw ASGI endpoint over a pooled aiohttp
session.

aiohttp is the hop because it is the cheapest pooled client measured for it: about a fifth of
the CPU per request of httpx or of raw httpcore (whose pool also polls every idle connection
on each request). httpx stays for the cold paths (the OpenAPI documents, `/diagnostics`).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
import httpx
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send
from yarl import URL

from services.gateway import messages
from services.gateway.settings import GatewaySettings
from shared.errors import GatewayTimeout, PayloadTooLarge, ServiceUnavailable
from shared.serve import INTERNAL_KEEPALIVE_S
from shared.tracing import inject_headers
from shared.web.middleware import request_id_var

# Connection-level headers are the proxy's own business (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
# The gateway's own: it sets them again (a request id, a span of its own, no compression).
_REPLACED = frozenset(
    {b"x-request-id", b"traceparent", b"tracestate", b"accept-encoding", b"x-forwarded-for"}
)
_DROP_FROM_REQUEST = _HOP_BY_HOP | _REPLACED
_DROP_FROM_RESPONSE = _HOP_BY_HOP | {b"x-request-id", b"server", b"date"}
# What the client library would add on its own (a body's type among them): the forwarded
# request carries only the client's headers and the gateway's.
_NO_DEFAULT_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
# Methods whose empty body is still sent with `content-length: 0`, as before (httpx's rule).
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# A body that must not have a length header (RFC 9110 §8.6), as Starlette's Response decides.
_NO_LENGTH_STATUSES = frozenset({204, 304})


class UpstreamDown(ServiceUnavailable):
    default_code = "UPSTREAM_UNAVAILABLE"
    default_message = messages.UPSTREAM_DOWN


class UpstreamTimeout(GatewayTimeout):
    default_message = messages.UPSTREAM_SLOW


class BodyTooLarge(PayloadTooLarge):
    default_message = messages.BODY_TOO_LARGE


class UpstreamClient:
    """The pooled connections to the services. `transport` is for tests: it answers the
    cold-path httpx client (`http`) in process."""

    def __init__(
        self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None
    ):
        self._bases = settings.upstreams()
        self._max_body = settings.max_body_bytes
        # httpx's timeouts, in aiohttp's terms: `connect` covers waiting for a pooled
        # connection too (httpx's pool timeout); `sock_read` is per read, as httpx's read.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.upstream_timeout_s,
            sock_connect=settings.upstream_connect_timeout_s,
            sock_read=settings.upstream_timeout_s,
        )
        self._session: aiohttp.ClientSession | None = None
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
            ),
            limits=httpx.Limits(max_keepalive_connections=8, keepalive_expiry=INTERNAL_KEEPALIVE_S),
            transport=transport,
            follow_redirects=False,
        )

    @property
    def session(self) -> aiohttp.ClientSession:
        """Made on first use: an aiohttp session belongs to the running event loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=INTERNAL_KEEPALIVE_S),
                timeout=self._timeout,
                # One session serves every user: it must keep no cookie of any of them.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=_NO_DEFAULT_HEADERS,
            )
        return self._session

    async def aclose(self) -> None:
        await self.http.aclose()
        if self._session is not None:
            await self._session.close()

    def base_url(self, upstream: str) -> str:
        return self._bases[upstream]

    async def read(
        self, upstream: str, path: str, headers: dict[str, str]
    ) -> tuple[int, bytes] | None:
        """GET `path` of an upstream: its status and body, or None when it did not answer."""
        url = URL(self._bases[upstream] + path, encoded=True)
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as answer:
                return answer.status, await answer.read()
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    async def forward(self, scope: Scope, receive: Receive, send: Send, upstream: str) -> None:
        """Send the request in `scope` on to `upstream` and its answer back to the client."""
        body = await self._read_body(scope, receive)
        headers: list[tuple[str, str]] = []
        prior: str | None = None
        for key, value in scope["headers"]:
            if key == b"x-forwarded-for" and prior is None:
                prior = value.decode("latin-1")
            if key not in _DROP_FROM_REQUEST:
                # UTF-8 both ways: the bytes the client sent are the bytes forwarded.
                headers.append((key.decode("latin-1"), value.decode("utf-8", "replace")))
        own: dict[str, str] = {"x-request-id": request_id_var.get()}
        # The caller's traceparent is replaced by the gateway's own span (its child).
        inject_headers(own)
        own["accept-encoding"] = "identity"
        client = scope.get("client")
        if client is not None:
            own["x-forwarded-for"] = f"{prior}, {client[0]}" if prior else client[0]
        elif prior is not None:
            own["x-forwarded-for"] = prior
        headers.extend(own.items())
        url = URL(self._bases[upstream] + _upstream_target(scope), encoded=True)
        method: str = scope["method"]
        data = body if body or method in _BODY_METHODS else None
        try:
            async with self.session.request(
                method, url, headers=headers, data=data, allow_redirects=False
            ) as answer:
                content = await answer.read()
                status, raw = answer.status, answer.raw_headers
        except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors
            raise UpstreamTimeout(service=upstream) from None
        except (aiohttp.ClientError, OSError):
            raise UpstreamDown(service=upstream) from None
        response_headers = []
        if status >= 200 and status not in _NO_LENGTH_STATUSES:
            response_headers.append((b"content-length", str(len(content)).encode()))
        # Raw pairs keep repeated headers (e.g. several Set-Cookie) intact.
        for key, value in raw:
            lowered = key.lower()
            if lowered not in _DROP_FROM_RESPONSE:
                response_headers.append((lowered, value))
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > self._max_body:
                raise BodyTooLarge(limit=self._max_body)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                raise ClientDisconnect
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge(limit=self._max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


# What may stay as it is in a forwarded path or query; anything else is percent-encoded.
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


def _upstream_target(scope: Scope) -> str:
    """The path and query as the client sent them: the raw path keeps its percent-encoding
    (the decoded one may hold control characters, or an encoded `/`)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    target = quote(raw, safe=_URL_SAFE)
    query: bytes = scope.get("query_string", b"")
    if query:
        target += "?" + quote(query, safe=_URL_SAFE)
    return target
