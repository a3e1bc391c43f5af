"""The outbound guard: HTTP requests to user-supplied URLs may reach public addresses only.

`check_url` refuses anything but http/https, resolves the host with the event loop's resolver
(literal addresses and oddities such as `127.1` included) and refuses the URL unless every
address is public or inside a network the operator allowed (`OutboundPolicy`). "Public" is
`ipaddress`'s `is_global` and none of loopback, private, link-local, multicast, reserved,
unspecified or site-local; an IPv4 address embedded in IPv6 (`::ffff:a.b.c.d`, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`) is judged by that IPv4 address.

`guarded_request` checks the URL, connects to the very addresses it checked (`pinning`: no
second DNS lookup, so DNS rebinding cannot swap in a private address), follows redirects by
hand and checks and pins every hop again, reads at most `max_chars` of the body (decompression
bounded too, `bodies`), and turns transport failures into `OutboundFailed`. Policy refusals
are `OutboundRefused`; both carry a bilingual message (`render(language)`).

Across origins a redirect carries only CORS-safelisted headers (Accept, Accept-Language,
Content-Language, a form or text/plain Content-Type, as the Fetch standard defines them):
an API key in a custom header stays with the origin it was meant for. Cookies the client
collected from earlier responses are never sent: the client may be shared by every user.

`resolve_checked(host, policy)` is the check alone, for clients that connect by themselves:
connect to one of the addresses it returns, never to the name.
"""

from __future__ import annotations

import asyncio
import codecs
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from shared.i18n import LocalizedError, Message
from shared.net.bodies import ACCEPT_ENCODING, iter_decoded
from shared.net.pinning import send_pinned
from shared.text import shortened

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Answers a host name (ASCII) with its addresses; OSError when it cannot.
Resolver = Callable[[str], Awaitable[Sequence[IPAddress]]]

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_TO_GET_STATUSES: Final = frozenset({301, 302, 303})
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
# The only headers carried to another origin: the Fetch standard's CORS-safelisted ones.
_SAFELISTED: Final = frozenset(
    {b"accept", b"accept-language", b"content-language", b"content-type"}
)
_SAFELISTED_CONTENT_TYPES: Final = frozenset(
    {b"application/x-www-form-urlencoded", b"multipart/form-data", b"text/plain"}
)
_CORS_UNSAFE: Final = frozenset(b'"():<>?@[\\]{}\x7f') | (frozenset(range(0x20)) - {0x09})
_LANGUAGE_BYTES: Final = frozenset(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz *,-.;="
)
_SAFELISTED_MAX_BYTES: Final = 128
# Dropped with the body when a redirect turns the request into a GET.
_BODY_HEADERS: Final = ("content-type", "content-length", "content-encoding", "transfer-encoding")
_SHOWN_CHARS: Final = 200


class OutboundError(LocalizedError):
    """Base of the guard's errors: a bilingual message and its parameters."""


class OutboundRefused(OutboundError):
    """The request is not allowed: private address, bad scheme, host not allowed, ..."""


class OutboundFailed(OutboundError):
    """The request was allowed but did not complete: connection refused, timeout, ..."""


_PRIVATE = Message(
    "不允许访问内网地址 {host}({address})",
    "requests to the private address {host} ({address}) are not allowed",
)
_SCHEME = Message(
    "只允许 http 和 https 地址,不支持 {scheme}",
    "only http and https URLs are allowed, not {scheme}",
)
_NO_HOST = Message("地址缺少主机名:{url}", "the URL has no host: {url}")
_INVALID_URL = Message("地址无效:{detail}", "invalid URL: {detail}")
_UNRESOLVABLE = Message("无法解析主机名 {host}", "cannot resolve the host {host}")
_TOO_MANY_REDIRECTS = Message(
    "重定向次数过多(最多 {limit} 次)", "too many redirects (at most {limit})"
)
_HOST_NOT_ALLOWED = Message(
    "不允许访问主机 {host}(允许的主机:{allowed})",
    "the host {host} is not allowed (allowed hosts: {allowed})",
)
_INVALID_REQUEST = Message("请求无效:{detail}", "invalid request: {detail}")
_CONNECT = Message("无法连接 {host}:{detail}", "cannot connect to {host}: {detail}")
_TIMEOUT = Message(
    "请求 {host} 超时({timeout:g} 秒)", "the request to {host} timed out after {timeout:g} s"
)
_FAILED = Message("请求 {host} 失败:{detail}", "the request to {host} failed: {detail}")
_BAD_REDIRECT = Message(
    "{host} 返回的重定向地址无效:{location}",
    "{host} redirected to an invalid URL: {location}",
)


def _shown(text: str) -> str:
    return shortened(text, _SHOWN_CHARS)


def _detail(exc: BaseException) -> str:
    return _shown(str(exc) or type(exc).__name__)


# -- addresses -----------------------------------------------------------------------------


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries traffic to, if it embeds one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


def _is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


@dataclass(frozen=True)
class OutboundPolicy:
    """Which non-public networks the operator lets workflows reach (none by default).

    `resolver` answers host names (the event loop's `getaddrinfo` when None); tests inject
    one to play a rebinding DNS server."""

    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_strings(
        cls, networks: Iterable[str], resolver: Resolver | None = None
    ) -> OutboundPolicy:
        """Networks such as `10.0.0.0/8`, `127.0.0.1/32` or `::1` (a bare address is one host).

        ValueError names the first value that is not a network (host bits set included:
        `10.0.0.1/8` is refused rather than silently widened to `10.0.0.0/8`)."""
        parsed: list[IPNetwork] = []
        for value in networks:
            try:
                parsed.append(ipaddress.ip_network(value.strip()))
            except ValueError as exc:
                raise ValueError(f"not an IP network: {value!r} ({exc})") from exc
        return cls(tuple(parsed), resolver)

    def _inside_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks)

    def address_allowed(self, address: IPAddress) -> bool:
        """True if the address is public, or inside one of the allowed networks."""
        embedded = _embedded_ipv4(address)
        if self._inside_allowed(address) or (
            embedded is not None and self._inside_allowed(embedded)
        ):
            return True
        return _is_public(embedded if embedded is not None else address)


# -- URLs ----------------------------------------------------------------------------------


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise OutboundRefused(_INVALID_URL, detail=_detail(exc)) from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise OutboundRefused(_SCHEME, scheme=_shown(parsed.scheme) or "(none)")
    if not parsed.raw_host:
        raise OutboundRefused(_NO_HOST, url=_shown(str(parsed)))
    return parsed


async def system_resolve(host: str) -> list[IPAddress]:
    """The host's IPv4 and IPv6 addresses from the event loop's `getaddrinfo`, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [
        ipaddress.ip_address(sockaddr[0])
        for family, _, _, _, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    ]


async def _resolve(host: str, resolver: Resolver) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        answered = await resolver(host)
    except (OSError, UnicodeError, ValueError) as exc:
        raise OutboundRefused(_UNRESOLVABLE, host=_shown(host)) from exc
    addresses = list(dict.fromkeys(answered))  # without repeats, in the resolver's order
    if not addresses:
        raise OutboundRefused(_UNRESOLVABLE, host=_shown(host))
    return addresses


async def resolve_checked(
    host: str, policy: OutboundPolicy, *, shown_host: str | None = None
) -> list[IPAddress]:
    """The addresses of `host` (an IP literal is its own), all allowed by `policy`.

    OutboundRefused when the host does not resolve or any of its addresses is not allowed
    (`shown_host` names it in the message). Connect to these addresses, never to the name
    again: a second lookup may answer otherwise (DNS rebinding)."""
    addresses = await _resolve(host, policy.resolver or system_resolve)
    for address in addresses:
        if not policy.address_allowed(address):
            name = _shown(shown_host or host)
            raise OutboundRefused(_PRIVATE, host=name, address=str(address))
    return addresses


async def _check(url: httpx.URL, policy: OutboundPolicy) -> list[IPAddress]:
    return await resolve_checked(url.raw_host.decode("ascii"), policy, shown_host=url.host)


async def check_url(url: str | httpx.URL, policy: OutboundPolicy) -> list[IPAddress]:
    """The addresses to connect to for `url`; OutboundRefused unless it is http(s) and every
    address of its host is allowed."""
    return await _check(_parse(url), policy)


def _check_host(url: httpx.URL, allowed_hosts: frozenset[str]) -> None:
    if not allowed_hosts:
        return
    names = {url.host.lower(), url.raw_host.decode("ascii").lower()}
    if names.isdisjoint(allowed_hosts):
        raise OutboundRefused(
            _HOST_NOT_ALLOWED,
            host=_shown(url.host),
            allowed=_shown(", ".join(sorted(allowed_hosts))),
        )


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.raw_host.lower(), url.port or default_port


def _cors_safelisted(name: bytes, value: bytes) -> bool:
    """The Fetch standard's CORS-safelisted request-header test (without Range)."""
    lowered = name.lower()
    if lowered not in _SAFELISTED or len(value) > _SAFELISTED_MAX_BYTES:
        return False
    if lowered in (b"accept-language", b"content-language"):
        return all(byte in _LANGUAGE_BYTES for byte in value)
    if any(byte in _CORS_UNSAFE for byte in value):
        return False
    if lowered == b"content-type":
        essence = value.split(b";", 1)[0].strip().lower()
        return essence in _SAFELISTED_CONTENT_TYPES
    return True


def _cross_origin_headers(headers: httpx.Headers) -> httpx.Headers:
    """What may follow a redirect to another origin: the CORS-safelisted headers only."""
    return httpx.Headers(
        [(name, value) for name, value in headers.raw if _cors_safelisted(name, value)]
    )


# -- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    text: str  # the decoded body, at most max_chars
    truncated: bool
    url: str  # the final URL, after redirects


def _charset(response: httpx.Response) -> str:
    charset = response.charset_encoding or "utf-8"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return "utf-8"


async def _read_text(response: httpx.Response, max_chars: int) -> tuple[str, bool]:
    """At most `max_chars` of the body; stops downloading (and inflating) once it has more."""
    decoder = codecs.getincrementaldecoder(_charset(response))(errors="replace")
    parts: list[str] = []
    size = 0
    async for chunk in iter_decoded(response):
        text = decoder.decode(chunk)
        parts.append(text)
        size += len(text)
        if size > max_chars:
            return "".join(parts)[:max_chars], True
    parts.append(decoder.decode(b"", final=True))
    text = "".join(parts)
    if len(text) > max_chars:
        return text[:max_chars], True
    return text, False


async def guarded_request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    content: str | bytes | None = None,
    json_body: Any = None,
    timeout: float = 30.0,
    max_redirects: int = 5,
    max_chars: int = 1_000_000,
    allowed_hosts: Collection[str] = (),
) -> OutboundResponse:
    """One HTTP request through the guard; `timeout` bounds the whole call, redirects included.

    Every hop must pass `check_url` (and be one of `allowed_hosts`, exactly and ignoring case,
    when that is not empty) before it is requested, and is sent to the addresses checked.
    301/302/303 continue as a GET without body (HEAD stays HEAD); 307/308 repeat the method and
    body. Only CORS-safelisted headers go on to another origin. The status is not judged: a
    404 is a response.
    """
    if max_redirects < 0 or max_chars < 0:
        raise ValueError("max_redirects and max_chars must not be negative")
    hosts = frozenset(host.strip().strip("[]").lower() for host in allowed_hosts)
    current = _parse(url)
    if params:
        try:
            current = current.copy_merge_params(dict(params))
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise OutboundRefused(_INVALID_URL, detail=_detail(exc)) from exc
    try:
        request_headers = httpx.Headers(dict(headers or {}))
    except (UnicodeError, ValueError, TypeError) as exc:
        raise OutboundRefused(_INVALID_REQUEST, detail=_detail(exc)) from exc
    method = method.upper()
    try:
        async with asyncio.timeout(timeout):
            for _ in range(max_redirects + 1):
                _check_host(current, hosts)
                addresses = await _check(current, policy)
                try:
                    request = http.build_request(
                        method,
                        current,
                        headers=request_headers,
                        content=content,
                        json=json_body,
                        timeout=timeout,
                    )
                except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
                    raise OutboundRefused(_INVALID_REQUEST, detail=_detail(exc)) from exc
                # The client's cookie jar holds what other users' requests collected.
                if "cookie" not in request_headers:
                    request.headers.pop("cookie", None)
                if "accept-encoding" not in request_headers:
                    request.headers["accept-encoding"] = ACCEPT_ENCODING
                response = await send_pinned(http, request, addresses)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECT_STATUSES and location is not None:
                        status = response.status_code
                    else:
                        text, truncated = await _read_text(response, max_chars)
                        return OutboundResponse(
                            status_code=response.status_code,
                            headers=dict(response.headers),
                            text=text,
                            truncated=truncated,
                            url=str(current),
                        )
                finally:
                    await response.aclose()
                try:
                    target = _parse(current.join(location))
                except (httpx.InvalidURL, ValueError, TypeError) as exc:
                    raise OutboundFailed(
                        _BAD_REDIRECT, host=_shown(current.host), location=_shown(location)
                    ) from exc
                if _origin(target) != _origin(current):
                    request_headers = _cross_origin_headers(request_headers)
                if status in _TO_GET_STATUSES and method != "HEAD":
                    method, content, json_body = "GET", None, None
                    for name in _BODY_HEADERS:
                        request_headers.pop(name, None)
                current = target
    except httpx.TimeoutException as exc:
        raise OutboundFailed(_TIMEOUT, host=_shown(current.host), timeout=timeout) from exc
    except TimeoutError as exc:
        raise OutboundFailed(_TIMEOUT, host=_shown(current.host), timeout=timeout) from exc
    except httpx.ConnectError as exc:
        raise OutboundFailed(_CONNECT, host=_shown(current.host), detail=_detail(exc)) from exc
    except httpx.HTTPError as exc:
        raise OutboundFailed(_FAILED, host=_shown(current.host), detail=_detail(exc)) from exc
    raise OutboundRefused(_TOO_MANY_REDIRECTS, limit=max_redirects)
