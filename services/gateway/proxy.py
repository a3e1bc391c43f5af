"""Forwarding a public request to its upstream over a pooled httpx client."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from fastapi import Request, Response

from services.gateway import messages
from services.gateway.settings import GatewaySettings
from shared.errors import GatewayTimeout, PayloadTooLarge, ServiceUnavailable
from shared.serve import INTERNAL_KEEPALIVE_S
from shared.tracing import inject_headers
from shared.web.middleware import request_id_var

# Connection-level headers are the proxy's own business (RFC 9110 §7.6.1).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_DROP_FROM_RESPONSE = _HOP_BY_HOP | {"x-request-id", "server", "date"}


class UpstreamDown(ServiceUnavailable):
    default_code = "UPSTREAM_UNAVAILABLE"
    default_message = messages.UPSTREAM_DOWN


class UpstreamTimeout(GatewayTimeout):
    default_message = messages.UPSTREAM_SLOW


class BodyTooLarge(PayloadTooLarge):
    default_message = messages.BODY_TOO_LARGE


class UpstreamClient:
    def __init__(
        self, settings: GatewaySettings, transport: httpx.AsyncBaseTransport | None = None
    ):
        self._bases = settings.upstreams()
        self._max_body = settings.max_body_bytes
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.upstream_timeout_s, connect=settings.upstream_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=512,
                max_keepalive_connections=128,
                keepalive_expiry=INTERNAL_KEEPALIVE_S,
            ),
            transport=transport,
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    def base_url(self, upstream: str) -> str:
        return self._bases[upstream]

    async def forward(self, request: Request, upstream: str) -> Response:
        body = await self._read_body(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["x-request-id"] = request_id_var.get()
        # The caller's traceparent is replaced by the gateway's own span (its child).
        headers.pop("traceparent", None)
        headers.pop("tracestate", None)
        inject_headers(headers)
        headers["accept-encoding"] = "identity"
        if request.client is not None:
            prior = request.headers.get("x-forwarded-for")
            headers["x-forwarded-for"] = (
                f"{prior}, {request.client.host}" if prior else request.client.host
            )
        url = self._bases[upstream] + _upstream_target(request)
        try:
            upstream_response = await self.http.request(
                request.method, url, headers=headers, content=body
            )
        except httpx.TimeoutException:
            raise UpstreamTimeout(service=upstream) from None
        except httpx.TransportError:
            raise UpstreamDown(service=upstream) from None
        response = Response(
            content=upstream_response.content, status_code=upstream_response.status_code
        )
        # Raw pairs keep repeated headers (e.g. several Set-Cookie) intact.
        response.raw_headers.extend(
            (key.lower(), value)
            for key, value in upstream_response.headers.raw
            if key.decode("latin-1").lower() not in _DROP_FROM_RESPONSE
        )
        return response

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise BodyTooLarge(limit=self._max_body)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise BodyTooLarge(limit=self._max_body)
            chunks.append(chunk)
        return b"".join(chunks)


# What may stay as it is in a forwarded path or query; anything else is percent-encoded.
_URL_SAFE = "/%:@!$&'()*+,;=-._~?"


def _upstream_target(request: Request) -> str:
    """The path and query as the client sent them: the raw path keeps its percent-encoding
    (the decoded one may hold control characters httpx refuses, or an encoded `/`)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    target = quote(raw, safe=_URL_SAFE)
    query: bytes = request.scope.get("query_string", b"")
    if query:
        target += "?" + quote(query, safe=_URL_SAFE)
    return target
