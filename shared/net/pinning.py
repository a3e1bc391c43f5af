"""Connecting to the address the outbound guard checked, not to a second DNS answer.

Left alone, httpx resolves the host again to connect, and a DNS server that answers a public
address to the check and a private one to the connection (DNS rebinding) slips past the guard.
So a checked request is sent to the checked IP itself: its URL's host becomes that address, its
`Host` header keeps the name (httpx set it when the request was built), and for https the
`sni_hostname` request extension (documented by httpx and httpcore for exactly this) makes TLS
send the name and verify the certificate against it. Nothing is resolved after the check.

httpx pools connections by scheme, address and port, not by name: a kept-alive TLS connection
verified for one name would serve the next name that resolves to the same address, with no
certificate check for it (a spoofed DNS answer would then need no certificate at all). So an
https request sent here asks for `Connection: close` and leaves nothing in the pool; plain
http has no certificate to skip and keeps its connections.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_address(host: str) -> bool:
    """True for a literal IP address (nothing to resolve, nothing to pin)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def aimed_at(request: httpx.Request, address: IPAddress) -> httpx.Request:
    """`request` sent to `address`, still naming its host in `Host` and in TLS."""
    name = request.url.raw_host.decode("ascii")
    headers = httpx.Headers(request.headers)  # holds `Host: <name>` already
    extensions = dict(request.extensions)
    if request.url.scheme == "https":
        headers["connection"] = "close"  # see the module's docstring: no pooled TLS
        if not is_address(name):
            extensions["sni_hostname"] = name
    url = request.url if is_address(name) else request.url.copy_with(host=str(address))
    return httpx.Request(
        request.method, url, headers=headers, stream=request.stream, extensions=extensions
    )


async def send_pinned(
    http: httpx.AsyncClient, request: httpx.Request, addresses: Sequence[IPAddress]
) -> httpx.Response:
    """The streamed response from the first of `addresses` that accepts a connection.

    No redirect is followed: each hop must be checked (and pinned) by the caller."""
    if not addresses:
        raise ValueError("no address to send the request to")
    for address in addresses[:-1]:
        try:
            return await http.send(aimed_at(request, address), stream=True, follow_redirects=False)
        except httpx.ConnectError:
            continue  # as a resolver-driven connect would: try the host's next address
    return await http.send(aimed_at(request, addresses[-1]), stream=True, follow_redirects=False)
