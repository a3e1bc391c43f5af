"""The outbound guard connects to the address it checked (DNS rebinding), redirects across
origins carry only CORS-safelisted headers, and bodies are inflated in bounded steps.

Two real servers listen on the SAME port, one on 127.0.0.1 (the "internal" one the policy
forbids) and one on 127.0.0.2 (allowed). The system resolves `localhost` to 127.0.0.1, so a
client that looks the name up again to connect reaches the forbidden server; the guard's
injected resolver answers 127.0.0.2, which is where the request must go.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import ipaddress
import json
import ssl
import threading
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import TypeAdapter

from services.datasources.configs import ApiConfig
from services.datasources.connectors import ConnectorSettings, build_connector
from services.executor.worker.tools import ToolContext, call_tool
from shared.net.outbound import (
    IPAddress,
    OutboundFailed,
    OutboundPolicy,
    OutboundRefused,
    guarded_request,
    resolve_checked,
)
from shared.workflow.tools import Tool
from tests.support.processes import free_port

ALLOWED = ipaddress.ip_address("127.0.0.2")
FORBIDDEN = ipaddress.ip_address("127.0.0.1")
NOBODY = ipaddress.ip_address("127.0.0.3")  # allowed by the wide policy, nothing listens
# 100 MiB of zeros: about 100 KiB of gzip; httpx would inflate a 64 KiB read in one step.
BOMB = gzip.compress(b"\0" * (100 * 1024 * 1024), compresslevel=9)


class Resolver:
    """A DNS server under test control: each name's answers in turn, the last one repeated."""

    def __init__(self, **answers: Sequence[Sequence[IPAddress]]) -> None:
        self._answers = {name.replace("_", "."): list(turns) for name, turns in answers.items()}
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        turns = self._answers.get(host)
        if not turns:
            raise OSError(f"no such host {host}")
        return list(turns.pop(0) if len(turns) > 1 else turns[0])


def policy(resolver: Resolver, *networks: str) -> OutboundPolicy:
    return OutboundPolicy.from_strings(networks or ["127.0.0.2/32"], resolver=resolver)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        self.server.seen.append((self.command, parts.path, dict(self.headers.items())))
        if parts.path == "/redirect":
            self._send(int(query.get("status", "302")), b"", {"location": query["to"]})
        elif parts.path == "/set-cookie":
            self._send(200, b"{}", {"set-cookie": "session=other-users-secret; Path=/"})
        elif parts.path == "/bomb":
            self._send(200, BOMB, {"content-encoding": "gzip", "content-type": "text/plain"})
        elif parts.path == "/gzip":
            body = gzip.compress(b'{"small": "gzip"}')
            self._send(200, body, {"content-encoding": "gzip", "content-type": "application/json"})
        elif parts.path == "/brotli":
            self._send(200, b"\x0b\x02\x80", {"content-encoding": "br"})
        else:
            self._send(200, json.dumps({"served_by": self.server.name}).encode(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):  # the client hung up (a bounded read stops early)
            self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: IPAddress, port: int, name: str) -> None:
        super().__init__((str(address), port), _Handler)
        self.name = name
        self.seen: list[tuple[str, str, dict[str, str]]] = []


@dataclass
class Pair:
    """The allowed and the forbidden server, on one port."""

    port: int
    allowed: _Server
    forbidden: _Server
    threads: list[threading.Thread] = field(default_factory=list)

    def clear(self) -> None:
        self.allowed.seen.clear()
        self.forbidden.seen.clear()


def _pair() -> Pair:
    for _ in range(20):
        port = free_port()
        try:
            forbidden = _Server(FORBIDDEN, port, "forbidden")
        except OSError:
            continue
        try:
            allowed = _Server(ALLOWED, port, "allowed")
        except OSError:
            forbidden.server_close()
            continue
        threads = [
            threading.Thread(target=server.serve_forever, daemon=True)
            for server in (allowed, forbidden)
        ]
        for thread in threads:
            thread.start()
        return Pair(port, allowed, forbidden, threads)
    raise RuntimeError("no port free on both 127.0.0.1 and 127.0.0.2")


@pytest.fixture(scope="module")
def servers() -> Iterator[Pair]:
    pair = _pair()
    yield pair
    for server in (pair.allowed, pair.forbidden):
        server.shutdown()
        server.server_close()


@pytest.fixture
def pair(servers: Pair) -> Pair:
    servers.clear()
    return servers


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def served_by(text: str) -> str:
    return str(json.loads(text)["served_by"])


# -- DNS rebinding --------------------------------------------------------------------------


async def test_the_connection_goes_to_the_checked_address(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    # Allowed to the check, forbidden on any later lookup (the system says 127.0.0.1 too).
    resolver = Resolver(localhost=[[ALLOWED], [FORBIDDEN]])
    url = f"http://localhost:{pair.port}/echo"
    response = await guarded_request(http, "GET", url, policy=policy(resolver))
    assert served_by(response.text) == "allowed"
    assert pair.forbidden.seen == []
    [(method, path, headers)] = pair.allowed.seen
    assert (method, path, headers["Host"]) == ("GET", "/echo", f"localhost:{pair.port}")
    assert response.url == url  # the URL as written, not the address
    assert resolver.asked == ["localhost"]  # one lookup, the checked one
    # The resolver's next answer is refused: the next request is checked afresh.
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1"):
        await guarded_request(http, "GET", url, policy=policy(resolver))
    assert pair.forbidden.seen == []


async def test_a_redirect_is_checked_and_pinned_too(http: httpx.AsyncClient, pair: Pair) -> None:
    resolver = Resolver(localhost=[[ALLOWED]])
    first = f"http://{ALLOWED}:{pair.port}/redirect?to=http://localhost:{pair.port}/echo"
    response = await guarded_request(http, "GET", first, policy=policy(resolver))
    assert served_by(response.text) == "allowed"
    assert [path for _, path, _ in pair.allowed.seen] == ["/redirect", "/echo"]
    assert pair.forbidden.seen == []
    assert resolver.asked == ["localhost"]


async def test_each_hop_is_resolved_and_checked_again(http: httpx.AsyncClient, pair: Pair) -> None:
    # The same host redirects to itself; its second answer is the forbidden address.
    resolver = Resolver(rebind_test=[[ALLOWED], [FORBIDDEN]])
    url = f"http://rebind.test:{pair.port}/redirect?to=/echo"
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1"):
        await guarded_request(http, "GET", url, policy=policy(resolver))
    assert [path for _, path, _ in pair.allowed.seen] == ["/redirect"]
    assert pair.forbidden.seen == []
    assert resolver.asked == ["rebind.test", "rebind.test"]


async def test_the_next_checked_address_is_tried_when_one_refuses(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    resolver = Resolver(multi_test=[[NOBODY, ALLOWED]])
    url = f"http://multi.test:{pair.port}/echo"
    wide = policy(resolver, "127.0.0.2/32", "127.0.0.3/32")
    response = await guarded_request(http, "GET", url, policy=wide)
    assert served_by(response.text) == "allowed"
    # Every address must pass, not just the one that answers.
    mixed = Resolver(mixed_test=[[ALLOWED, FORBIDDEN]])
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1"):
        await guarded_request(http, "GET", f"http://mixed.test:{pair.port}/", policy=policy(mixed))
    assert pair.forbidden.seen == []


async def test_resolve_checked_returns_the_addresses_to_connect_to() -> None:
    resolver = Resolver(db_test=[[ALLOWED, ALLOWED]], internal_test=[[FORBIDDEN]])
    assert await resolve_checked("db.test", policy(resolver)) == [ALLOWED]
    assert await resolve_checked("127.0.0.2", policy(resolver)) == [ALLOWED]
    with pytest.raises(OutboundRefused, match="private address"):
        await resolve_checked("internal.test", policy(resolver))
    with pytest.raises(OutboundRefused, match="cannot resolve"):
        await resolve_checked("nowhere.test", policy(resolver))


async def test_the_agents_http_tool_connects_to_the_checked_address(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    ctx = ToolContext(http=http, outbound=policy(Resolver(localhost=[[ALLOWED]])), language="en")
    config = TypeAdapter(Tool).validate_python({"type": "http_request"})
    url = f"http://localhost:{pair.port}/echo"
    outcome = await call_tool(config, json.dumps({"url": url}), ctx)
    assert outcome.ok, outcome.result
    assert served_by(json.loads(outcome.result)["body"]) == "allowed"
    assert pair.forbidden.seen == []


async def test_an_api_data_source_connects_to_the_checked_address(pair: Pair) -> None:
    settings = ConnectorSettings(outbound=policy(Resolver(localhost=[[ALLOWED]])))
    config = ApiConfig(base_url=f"http://localhost:{pair.port}/api")
    connector = build_connector("api", config, settings)
    try:
        result = await connector.query("items", None, max_rows=10)
    finally:
        await connector.close()
    assert result.rows == [{"served_by": "allowed"}]
    assert pair.forbidden.seen == []


# -- TLS: SNI and certificate checks stay on the name -----------------------------------------


@dataclass
class Tls:
    client: ssl.SSLContext
    server: ssl.SSLContext
    names_seen: list[str | None]


def _tls(tmp: Path, name: str) -> Tls:
    """A CA, a certificate for `name` signed by it, and contexts for both ends."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    names_seen: list[str | None] = []
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    server.sni_callback = lambda _socket, sni, _context: names_seen.append(sni)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return Tls(client, server, names_seen)


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Tls]]:
    tls = _tls(tmp_path_factory.mktemp("tls"), "pinned.test")
    server = _Server(ALLOWED, free_port(), "tls")
    server.socket = tls.server.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], tls
    server.shutdown()
    server.server_close()


async def test_tls_sends_and_verifies_the_name_not_the_address(
    tls_site: tuple[int, Tls],
) -> None:
    port, tls = tls_site
    resolver = Resolver(pinned_test=[[ALLOWED]], wrong_test=[[ALLOWED]])
    async with httpx.AsyncClient(verify=tls.client, trust_env=False) as http:
        response = await guarded_request(
            http, "GET", f"https://pinned.test:{port}/echo", policy=policy(resolver)
        )
        assert served_by(response.text) == "tls"
        assert tls.names_seen[-1] == "pinned.test"
        # The certificate is still checked, against the name: another name fails.
        with pytest.raises(OutboundFailed, match=r"certificate|hostname"):
            await guarded_request(
                http, "GET", f"https://wrong.test:{port}/echo", policy=policy(resolver)
            )
        assert tls.names_seen[-1] == "wrong.test"


# -- headers on redirects ---------------------------------------------------------------------


async def test_secrets_stay_with_their_origin_on_a_redirect(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    # Another port is another origin, though the address is the same.
    other = _Server(ALLOWED, free_port(), "other")
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        headers = {
            "X-Api-Key": "k-secret",
            "Authorization": "Bearer t-secret",
            "Cookie": "session=c-secret",
            "Accept": "application/json",
            "Accept-Language": "zh-CN,en;q=0.5",
            "Content-Type": "application/json",
        }
        to = f"http://{ALLOWED}:{other.server_address[1]}/echo"
        start = f"http://{ALLOWED}:{pair.port}/redirect?status=307&to={to}"
        response = await guarded_request(
            http, "POST", start, policy=policy(Resolver()), headers=headers, content="{}"
        )
        assert served_by(response.text) == "other"
        [(_, _, seen)] = other.seen
        lowered = {name.lower(): value for name, value in seen.items()}
        assert not {"x-api-key", "authorization", "cookie"} & lowered.keys()
        assert "secret" not in json.dumps(seen)
        assert lowered["accept"] == "application/json"
        assert lowered["accept-language"] == "zh-CN,en;q=0.5"
        assert "content-type" not in lowered  # application/json is not safelisted
        # The same origin keeps every header.
        same = f"http://{ALLOWED}:{pair.port}/redirect?status=307&to=/echo"
        await guarded_request(
            http, "POST", same, policy=policy(Resolver()), headers=headers, content="{}"
        )
        kept = {name.lower(): value for name, value in pair.allowed.seen[-1][2].items()}
        assert kept["x-api-key"] == "k-secret"
        assert kept["authorization"] == "Bearer t-secret"
        assert kept["content-type"] == "application/json"
    finally:
        other.shutdown()
        other.server_close()


async def test_cookies_one_request_collected_are_not_sent_by_the_next(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    # The worker's client is shared by every user: its cookie jar must not carry one user's
    # session into another user's request.
    base = f"http://{ALLOWED}:{pair.port}"
    await guarded_request(http, "GET", f"{base}/set-cookie", policy=policy(Resolver()))
    await guarded_request(http, "GET", f"{base}/echo", policy=policy(Resolver()))
    assert "Cookie" not in pair.allowed.seen[-1][2]
    await guarded_request(
        http, "GET", f"{base}/echo", policy=policy(Resolver()), headers={"Cookie": "mine=1"}
    )
    assert pair.allowed.seen[-1][2]["Cookie"] == "mine=1"


# -- bodies -----------------------------------------------------------------------------------


async def test_a_gzip_bomb_is_inflated_only_as_far_as_it_is_read(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    url = f"http://{ALLOWED}:{pair.port}/bomb"
    tracemalloc.start()
    try:
        response = await guarded_request(
            http, "GET", url, policy=policy(Resolver()), max_chars=1000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (response.text, response.truncated) == ("\0" * 1000, True)
    # httpx alone inflates a whole 64 KiB read at once: 60 MiB and more for this body.
    assert peak < 8 * 1024 * 1024


async def test_compressed_bodies_are_read_and_unknown_encodings_refused(
    http: httpx.AsyncClient, pair: Pair
) -> None:
    base = f"http://{ALLOWED}:{pair.port}"
    response = await guarded_request(http, "GET", f"{base}/gzip", policy=policy(Resolver()))
    assert json.loads(response.text) == {"small": "gzip"}
    sent = {name.lower(): value for name, value in pair.allowed.seen[-1][2].items()}
    assert sent["accept-encoding"] == "gzip, deflate"
    with pytest.raises(OutboundFailed, match="unsupported content encoding: br"):
        await guarded_request(http, "GET", f"{base}/brotli", policy=policy(Resolver()))
