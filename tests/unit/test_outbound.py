"""The outbound guard against real local HTTP servers (on 127.0.0.1 and 127.0.0.2)."""

from __future__ import annotations

import ipaddress
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import ValidationError

from shared.net.outbound import (
    OutboundFailed,
    OutboundPolicy,
    OutboundRefused,
    check_url,
    guarded_request,
)
from shared.settings import PlatformSettings
from tests.support.processes import free_port

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.1/32"])
ALL_LOOPBACK = OutboundPolicy.from_strings(["127.0.0.0/8"])
DEFAULT = OutboundPolicy()
ENDLESS_CAP = 50_000_000  # the endless body stops here even if nobody hangs up


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.seen.append((self.command, self.path))
        if parts.path == "/json":
            self._send(200, json.dumps({"hello": "世界"}, ensure_ascii=False), "application/json")
        elif parts.path == "/echo":
            echoed = {"method": self.command, "body": body, "headers": dict(self.headers)}
            self._send(200, json.dumps(echoed), "application/json")
        elif parts.path == "/redirect":
            self.send_response(int(query.get("status", "302")))
            self.send_header("location", query["to"])
            self.send_header("content-length", "0")
            self.end_headers()
        elif parts.path == "/loop":
            self.send_response(302)
            self.send_header("location", "/loop")
            self.send_header("content-length", "0")
            self.end_headers()
        elif parts.path == "/endless":
            self._endless()
        elif parts.path == "/slow":
            time.sleep(1.5)
            self._send(200, "late", "text/plain")
        elif parts.path == "/latin1":
            self.send_response(200)
            self.send_header("content-type", "text/plain; charset=iso-8859-1")
            self.end_headers()
            self.wfile.write("café".encode("latin-1"))
        else:
            self._send(404, "no such page", "text/plain")

    def _send(self, status: int, text: str, content_type: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", f"{content_type}; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _endless(self) -> None:
        # HTTP/1.0 without content-length: the body ends when the server closes, which it
        # does only after ENDLESS_CAP bytes, or when the client hangs up.
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.end_headers()
        chunk = b"x" * 65536
        try:
            while self.server.sent < ENDLESS_CAP:
                self.wfile.write(chunk)
                self.server.sent += len(chunk)
        except OSError:
            return

    do_GET = do_POST = do_PUT = do_HEAD = _answer  # noqa: N815 - the stdlib's names

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.seen: list[tuple[str, str]] = []
        self.sent = 0


@dataclass
class Site:
    server: _Server
    base: str
    thread: threading.Thread = field(repr=False)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _serve(host: str) -> Site:
    server = _Server(host, free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return Site(server, f"http://{host}:{server.server_address[1]}", thread)


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Site, Site]]:
    first, second = _serve("127.0.0.1"), _serve("127.0.0.2")
    yield first, second
    for site in (first, second):
        site.server.shutdown()
        site.server.server_close()


@pytest.fixture
def site(sites: tuple[Site, Site]) -> Site:
    sites[0].server.seen.clear()
    return sites[0]


@pytest.fixture
def other_site(sites: tuple[Site, Site]) -> Site:
    sites[1].server.seen.clear()
    return sites[1]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def _redirect(site: Site, to: str, status: int = 302) -> str:
    return str(httpx.URL(site.url("/redirect"), params={"to": to, "status": str(status)}))


# -- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.1.1", False),  # multicast, though `is_global` says True
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("::1", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("fc00::1", False),
        ("fd12:3456::1", False),
        ("fe80::1", False),
        ("fec0::1", False),
        ("ff0e::1", False),
    ],
)
def test_only_public_addresses_are_allowed_by_default(address: str, allowed: bool) -> None:
    assert DEFAULT.address_allowed(ipaddress.ip_address(address)) is allowed


def test_allowed_networks_open_private_addresses() -> None:
    policy = OutboundPolicy.from_strings(["127.0.0.1/32", "10.0.0.0/8", " ::1 "])
    allowed = ["127.0.0.1", "::ffff:127.0.0.1", "10.200.0.1", "::1", "8.8.8.8"]
    refused = ["127.0.0.2", "192.168.0.1", "169.254.169.254", "::2"]
    assert all(policy.address_allowed(ipaddress.ip_address(a)) for a in allowed)
    assert not any(policy.address_allowed(ipaddress.ip_address(a)) for a in refused)


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/8", "localhost", "", "::1/200"])
def test_bad_network_strings_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not an IP network") as caught:
        OutboundPolicy.from_strings(["127.0.0.1/32", bad])
    assert repr(bad) in str(caught.value)


# -- check_url without network ---------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/x",
        "http://10.1.2.3/",
        "http://[::1]:8000/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "https://192.168.0.1/",
        "http://127.1/",  # inet_aton forms resolve to loopback too
        "http://2130706433/",
        "http://0x7f.0.0.1/",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused) as caught:
        await check_url(url, DEFAULT)
    assert "private address" in caught.value.render("en")
    assert "内网地址" in caught.value.render("zh")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.com/file", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://127.0.0.1:70/", "only http and https"),
        ("example.com/path", "only http and https"),
        ("http:///path", "no host"),
    ],
)
async def test_other_urls_are_refused(url: str, expected: str) -> None:
    with pytest.raises(OutboundRefused, match=expected):
        await check_url(url, DEFAULT)


async def test_a_public_literal_address_passes() -> None:
    await check_url("https://8.8.8.8/dns-query", DEFAULT)
    await check_url("http://[2606:4700:4700::1111]/", DEFAULT)


# -- guarded_request against the local servers -------------------------------------------------


async def test_loopback_is_refused_before_any_request(http: httpx.AsyncClient, site: Site) -> None:
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.1"):
        await guarded_request(http, "GET", site.url("/json"), policy=DEFAULT)
    assert site.server.seen == []


async def test_an_allowed_network_is_reached(http: httpx.AsyncClient, site: Site) -> None:
    response = await guarded_request(
        http, "GET", site.url("/json"), policy=LOOPBACK, params={"q": "1"}
    )
    assert response.status_code == 200
    assert json.loads(response.text) == {"hello": "世界"}
    assert response.headers["content-type"].startswith("application/json")
    assert not response.truncated
    assert response.url == site.url("/json?q=1")
    assert site.server.seen == [("GET", "/json?q=1")]


async def test_a_404_is_a_response(http: httpx.AsyncClient, site: Site) -> None:
    response = await guarded_request(http, "GET", site.url("/missing"), policy=LOOPBACK)
    assert (response.status_code, response.text) == (404, "no such page")


async def test_localhost_is_reached_only_when_allowed(http: httpx.AsyncClient, site: Site) -> None:
    url = site.url("/json").replace("127.0.0.1", "localhost")
    with pytest.raises(OutboundRefused, match="localhost"):
        await guarded_request(http, "GET", url, policy=DEFAULT)
    response = await guarded_request(http, "GET", url, policy=LOOPBACK)
    assert response.status_code == 200


async def test_a_redirect_to_another_loopback_address_is_refused(
    http: httpx.AsyncClient, site: Site, other_site: Site
) -> None:
    url = _redirect(site, other_site.url("/json"))
    with pytest.raises(OutboundRefused, match=r"127\.0\.0\.2"):
        await guarded_request(http, "GET", url, policy=LOOPBACK)
    assert len(site.server.seen) == 1
    assert other_site.server.seen == []
    # The second server does answer: the refusal above is the guard's, not a dead port.
    response = await guarded_request(http, "GET", url, policy=ALL_LOOPBACK)
    assert response.status_code == 200
    assert response.url == other_site.url("/json")
    assert other_site.server.seen == [("GET", "/json")]


async def test_a_redirect_to_cloud_metadata_is_refused(http: httpx.AsyncClient, site: Site) -> None:
    url = _redirect(site, "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(OutboundRefused, match=r"169\.254\.169\.254") as caught:
        await guarded_request(http, "GET", url, policy=LOOPBACK)
    assert "169.254.169.254" in caught.value.render("zh")


async def test_a_redirect_to_another_scheme_is_refused(http: httpx.AsyncClient, site: Site) -> None:
    with pytest.raises(OutboundRefused, match="only http and https"):
        await guarded_request(http, "GET", _redirect(site, "file:///etc/passwd"), policy=LOOPBACK)


async def test_relative_redirects_are_followed_up_to_the_limit(
    http: httpx.AsyncClient, site: Site
) -> None:
    with pytest.raises(OutboundRefused, match=r"too many redirects \(at most 3\)"):
        await guarded_request(http, "GET", site.url("/loop"), policy=LOOPBACK, max_redirects=3)
    assert len(site.server.seen) == 4
    response = await guarded_request(
        http, "GET", _redirect(site, "/json"), policy=LOOPBACK, max_redirects=1
    )
    assert response.status_code == 200


async def test_303_turns_a_post_into_a_get_and_307_keeps_it(
    http: httpx.AsyncClient, site: Site
) -> None:
    for status, method, body in ((303, "GET", ""), (302, "GET", ""), (307, "POST", "payload")):
        response = await guarded_request(
            http,
            "POST",
            _redirect(site, "/echo", status),
            policy=LOOPBACK,
            content="payload",
            headers={"content-type": "text/plain"},
        )
        echoed = json.loads(response.text)
        assert (echoed["method"], echoed["body"]) == (method, body), status
        lowered = {key.lower() for key in echoed["headers"]}
        assert ("content-type" in lowered) is (method == "POST")


async def test_only_safelisted_headers_follow_a_redirect_to_another_origin(
    http: httpx.AsyncClient, site: Site, other_site: Site
) -> None:
    headers = {"Authorization": "Bearer secret", "X-Trace": "1", "Accept-Language": "zh-CN"}
    same = await guarded_request(
        http, "GET", _redirect(site, "/echo"), policy=ALL_LOOPBACK, headers=headers
    )
    assert json.loads(same.text)["headers"]["Authorization"] == "Bearer secret"
    assert json.loads(same.text)["headers"]["X-Trace"] == "1"
    other = await guarded_request(
        http, "GET", _redirect(site, other_site.url("/echo")), policy=ALL_LOOPBACK, headers=headers
    )
    echoed = json.loads(other.text)["headers"]
    assert "Authorization" not in echoed
    assert "X-Trace" not in echoed  # not CORS-safelisted: it could hold a secret too
    assert echoed["Accept-Language"] == "zh-CN"


async def test_bodies_are_cut_at_max_chars_without_downloading_everything(
    http: httpx.AsyncClient, site: Site
) -> None:
    site.server.sent = 0
    response = await guarded_request(
        http, "GET", site.url("/endless"), policy=LOOPBACK, max_chars=100_000, timeout=10
    )
    assert response.truncated
    assert response.text == "x" * 100_000
    small = await guarded_request(http, "GET", site.url("/json"), policy=LOOPBACK, max_chars=5)
    assert (small.text, small.truncated) == ('{"hel', True)
    exact = await guarded_request(
        http, "GET", site.url("/missing"), policy=LOOPBACK, max_chars=len("no such page")
    )
    assert (exact.text, exact.truncated) == ("no such page", False)
    # The server stopped long before its cap: the client hung up.
    assert site.server.sent < ENDLESS_CAP


async def test_the_declared_charset_decodes_the_body(http: httpx.AsyncClient, site: Site) -> None:
    response = await guarded_request(http, "GET", site.url("/latin1"), policy=LOOPBACK)
    assert response.text == "café"


async def test_allowed_hosts_are_enforced_on_every_hop(
    http: httpx.AsyncClient, site: Site, other_site: Site
) -> None:
    with pytest.raises(OutboundRefused, match="not allowed") as caught:
        await guarded_request(
            http, "GET", site.url("/json"), policy=LOOPBACK, allowed_hosts=["example.com"]
        )
    assert "example.com" in caught.value.render("en")
    assert site.server.seen == []
    localhost = site.url("/json").replace("127.0.0.1", "localhost")
    response = await guarded_request(
        http, "GET", localhost, policy=LOOPBACK, allowed_hosts=["LocalHost"]
    )
    assert response.status_code == 200
    with pytest.raises(OutboundRefused, match=r"host 127\.0\.0\.2 is not allowed"):
        await guarded_request(
            http,
            "GET",
            _redirect(site, other_site.url("/json")),
            policy=ALL_LOOPBACK,
            allowed_hosts=["127.0.0.1"],
        )
    assert other_site.server.seen == []


async def test_an_unreachable_port_fails(http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    with pytest.raises(OutboundFailed, match="cannot connect") as caught:
        await guarded_request(http, "GET", url, policy=LOOPBACK)
    assert "无法连接" in caught.value.render("zh")


async def test_a_slow_server_times_out(http: httpx.AsyncClient, site: Site) -> None:
    started = time.monotonic()
    with pytest.raises(OutboundFailed, match=r"timed out after 0\.3 s"):
        await guarded_request(http, "GET", site.url("/slow"), policy=LOOPBACK, timeout=0.3)
    assert time.monotonic() - started < 1.4


async def test_invalid_header_values_are_refused(http: httpx.AsyncClient, site: Site) -> None:
    with pytest.raises(OutboundRefused, match="invalid request"):
        await guarded_request(
            http, "GET", site.url("/json"), policy=LOOPBACK, headers={"X-Name": "名字"}
        )


# -- settings -------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")  # no .env file is read from the repository
    return monkeypatch


def test_settings_read_the_allowed_networks(clean_env: pytest.MonkeyPatch) -> None:
    assert PlatformSettings(environment="development").outbound_policy() == OutboundPolicy()
    clean_env.setenv("AGENTFLOW_OUTBOUND_ALLOW_NETWORKS", '["127.0.0.1/32", "10.0.0.0/8"]')
    settings = PlatformSettings(environment="development")
    assert settings.outbound_allow_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    policy = settings.outbound_policy()
    assert policy.address_allowed(ipaddress.ip_address("10.9.8.7"))
    assert not policy.address_allowed(ipaddress.ip_address("192.168.0.1"))


def test_settings_refuse_a_bad_network(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AGENTFLOW_OUTBOUND_ALLOW_NETWORKS", '["127.0.0.1/32", "intranet"]')
    with pytest.raises(ValidationError, match="'intranet'"):
        PlatformSettings(environment="development")
