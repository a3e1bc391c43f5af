"""Resolving a host for a TCP connection that is not HTTP (SQL data sources), through the
outbound policy: the caller connects to the address returned here, never to the name again.

`checked_address(host, policy)` resolves `host` once (an IP literal is its own answer), refuses
it unless every address it resolves to is allowed by `OutboundPolicy.address_allowed` (public,
or inside `AGENTFLOW_OUTBOUND_ALLOW_NETWORKS`), and returns the first address. Handing that
address to the driver (keeping the name only for TLS) means a DNS server that answers
differently the second time (DNS rebinding) has no second time to answer.

The resolver is the policy's (`OutboundPolicy.resolver`, the system's when None), so tests
can play such a DNS server. Unlike `outbound.resolve_checked`, a refusal never names the
address the host resolved to: for a database port that would map the internal network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence

from shared.i18n import LocalizedError, Message
from shared.net.outbound import OutboundPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HOST_NOT_ALLOWED = Message(
    "不允许连接 {host}:它是内网、本机或保留地址,管理员未放行",
    "connections to {host} are not allowed: it is a private, loopback or reserved address "
    "the operator has not allowed",
)
HOST_UNRESOLVABLE = Message("找不到主机 {host}", "cannot find the host {host}")


class HostRefused(LocalizedError):
    """The host resolves to an address the policy refuses. The message names the host as the
    user wrote it, never the address it resolved to (that would map the internal network)."""


class HostUnresolvable(LocalizedError):
    """The host name does not resolve."""


async def system_resolver(host: str) -> list[IPAddress]:
    """The event loop's resolver (getaddrinfo), IPv4 and IPv6 stream addresses."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


async def checked_address(host: str, policy: OutboundPolicy) -> IPAddress:
    """The address to connect to for `host`: every address it resolves to must be allowed.

    HostRefused if one is not, HostUnresolvable if there is none."""
    literal = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        addresses: Sequence[IPAddress] = [ipaddress.ip_address(literal)]
    except ValueError:
        try:
            addresses = await (policy.resolver or system_resolver)(host)
        except (OSError, UnicodeError, ValueError):
            raise HostUnresolvable(HOST_UNRESOLVABLE, host=host) from None
    if not addresses:
        raise HostUnresolvable(HOST_UNRESOLVABLE, host=host)
    if not all(policy.address_allowed(address) for address in addresses):
        raise HostRefused(HOST_NOT_ALLOWED, host=host)
    return addresses[0]
