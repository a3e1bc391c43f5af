"""An `api` data source's secrets stay with its own origin when the API redirects elsewhere.

Two real servers on 127.0.0.1, on different ports: different origins. The first redirects a
query to the second, which records what it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.datasources.configs import ApiConfig
from services.datasources.connectors import ConnectorSettings, build_connector
from services.datasources.connectors.http_api import ApiConnector
from shared.net.outbound import OutboundPolicy
from tests.support.processes import free_port

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.1/32"])
SECRETS = ("key-secret", "custom-secret")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.path == "/api/away":
            self._send(302, b"", {"location": f"{self.server.elsewhere}/api/items"})
        elif self.path == "/api/here":
            self._send(302, b"", {"location": "/api/items"})
        else:
            body = json.dumps([{"served_by": self.server.name}]).encode()
            self._send(200, body, {"content-type": "application/json"})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", free_port()), _Handler)
        self.name = name
        self.elsewhere = ""
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[_Server, _Server]]:
    first, second = _Server("first"), _Server("second")
    first.elsewhere = second.base
    for server in (first, second):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield first, second
    for server in (first, second):
        server.shutdown()
        server.server_close()


@pytest.fixture
async def connector(sites: tuple[_Server, _Server]) -> AsyncIterator[ApiConnector]:
    for server in sites:
        server.seen.clear()
    config = ApiConfig(
        base_url=f"{sites[0].base}/api",
        headers={"X-Tenant-Token": "custom-secret"},
        auth={"type": "api_key", "name": "X-Api-Key", "value": "key-secret"},
    )
    made = build_connector("api", config, ConnectorSettings(outbound=LOOPBACK, max_rows=10))
    assert isinstance(made, ApiConnector)
    yield made
    await made.close()


async def test_the_api_key_does_not_follow_a_redirect_to_another_origin(
    connector: ApiConnector, sites: tuple[_Server, _Server]
) -> None:
    first, second = sites
    result = await connector.query("away", None, max_rows=10)
    assert result.rows == [{"served_by": "second"}]
    [(_, sent)] = second.seen
    assert "x-api-key" not in sent
    assert "x-tenant-token" not in sent
    assert not any(secret in json.dumps(sent) for secret in SECRETS)
    assert sent["accept"] == "application/json"  # CORS-safelisted: it goes along
    assert first.seen[0][1]["x-api-key"] == "key-secret"


async def test_a_redirect_within_the_origin_keeps_the_key(
    connector: ApiConnector, sites: tuple[_Server, _Server]
) -> None:
    first, second = sites
    result = await connector.query("here", None, max_rows=10)
    assert result.rows == [{"served_by": "first"}]
    assert [path for path, _ in first.seen] == ["/api/here", "/api/items"]
    assert first.seen[1][1]["x-api-key"] == "key-secret"
    assert first.seen[1][1]["x-tenant-token"] == "custom-secret"
    assert second.seen == []
