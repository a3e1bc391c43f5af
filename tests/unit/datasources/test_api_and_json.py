"""The api connector against a real local HTTP server, the json connector on real files, and
the pool of connectors."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from services.datasources.configs import ApiConfig, JsonConfig
from services.datasources.connectors import (
    ConnectorError,
    ConnectorPool,
    ConnectorSettings,
    build_connector,
)
from services.datasources.connectors.http_api import ApiConnector
from services.datasources.connectors.json_doc import JsonConnector
from shared.net.outbound import OutboundPolicy
from tests.support.processes import free_port

LOOPBACK = OutboundPolicy.from_strings(["127.0.0.1/32"])
ITEMS = [
    {"id": 1, "name": "苹果", "price": 3.5},
    {"id": 2, "name": "banana", "price": 1.25},
    {"id": 3, "name": "cherry", "price": 10},
]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        seen = Seen(
            self.command,
            parts.path,
            {key: values[0] for key, values in parse_qs(parts.query).items()},
            {key.lower(): value for key, value in self.headers.items()},
            json.loads(raw) if raw else None,
        )
        self.server.seen.append(seen)
        route = parts.path.removeprefix("/api")
        if route in ("", "/"):
            self._json(200, {"service": "test", "ok": True})
        elif route == "/items":
            self._json(200, {"data": {"items": ITEMS, "total": len(ITEMS)}})
        elif route == "/scalars":
            self._json(200, [1, "two", None, True])
        elif route == "/text":
            self._send(200, b"hello, not json", "text/plain")
        elif route == "/empty":
            self.send_response(204)
            self.end_headers()
        elif route == "/private":
            self._json(401, {"error": f"bad token {seen.headers.get('authorization')}"})
        elif route == "/broken":
            self._json(500, {"error": "boom"})
        elif route == "/redirect-out":
            self.send_response(302)
            self.send_header("location", "http://127.0.0.2:9/elsewhere")
            self.send_header("content-length", "0")
            self.end_headers()
        elif route.startswith(("/echo", "/users/")):
            self._json(200, {"method": seen.method, "path": seen.path, "query": seen.query})
        else:
            self._json(404, {"error": "no such page"})

    def _json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document, ensure_ascii=False).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", f"{content_type}; charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815 - the stdlib's names

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.seen: list[Seen] = []


@dataclass
class Site:
    server: _Server
    base: str
    thread: threading.Thread = field(repr=False)

    @property
    def last(self) -> Seen:
        return self.server.seen[-1]


@pytest.fixture(scope="module")
def site_server() -> Iterator[Site]:
    server = _Server(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(server, f"http://127.0.0.1:{server.server_address[1]}/api", thread)
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(site_server: Site) -> Site:
    site_server.server.seen.clear()
    return site_server


@pytest.fixture
async def api(site: Site) -> AsyncIterator[Callable[..., ApiConnector]]:
    """Makes api connectors for the local site (loopback allowed), closed after the test."""
    made: list[ApiConnector] = []

    def make(policy: OutboundPolicy = LOOPBACK, **config: Any) -> ApiConnector:
        settings = ConnectorSettings(outbound=policy, max_rows=100)
        connector = build_connector("api", ApiConfig(**{"base_url": site.base, **config}), settings)
        assert isinstance(connector, ApiConnector)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        await connector.close()


# -- api -----------------------------------------------------------------------------------


async def test_api_test_reports_the_status(api: Callable[..., ApiConnector], site: Site) -> None:
    assert await api().test() == "HTTP 200"
    assert site.last.path == "/api"


async def test_api_path_with_query_and_response_path(
    api: Callable[..., ApiConnector], site: Site
) -> None:
    connector = api(response_path="data.items", query_params={"lang": "zh"})
    result = await connector.query("/items?sort=name&limit=2", None, max_rows=10)
    assert result.rows == ITEMS
    assert result.columns == ["id", "name", "price"]
    assert (result.count, result.truncated) == (3, False)
    assert site.last.path == "/api/items"
    assert site.last.query == {"sort": "name", "limit": "2", "lang": "zh"}
    assert site.last.headers["accept"] == "application/json"


async def test_api_templates_are_filled_from_parameters(
    api: Callable[..., ApiConnector], site: Site
) -> None:
    connector = api(
        method="POST",
        query_params={"page": "{page}", "fixed": "yes"},
        body={"filter": {"name": "{name}", "label": "n={count}"}, "count": "{count}"},
    )
    parameters = {"user": "a/b c", "state": "open&x=1", "page": 2, "name": "张三", "count": 5}
    await connector.query("users/{user}/orders?state={state}", parameters, max_rows=10)
    seen = site.last
    assert seen.method == "POST"
    # A value fills one path segment, however many slashes it has.
    assert seen.path == "/api/users/a%2Fb%20c/orders"
    assert seen.query == {"state": "open&x=1", "page": "2", "fixed": "yes"}
    # A string that is only a template takes the value itself (a number stays a number).
    assert seen.body == {"filter": {"name": "张三", "label": "n=5"}, "count": 5}


async def test_api_missing_parameter_is_named(api: Callable[..., ApiConnector]) -> None:
    connector = api(query_params={"page": "{page}"})
    with pytest.raises(ConnectorError) as caught:
        await connector.query("items", {}, max_rows=10)
    assert caught.value.kind == "bad_query"
    assert "page" in caught.value.render("en")
    with pytest.raises(ConnectorError) as caught:
        await connector.query("items", [1, 2], max_rows=10)
    assert caught.value.kind == "bad_query"


@pytest.mark.parametrize(
    ("auth", "expect_header", "expect_query"),
    [
        ({"type": "none"}, None, {}),
        ({"type": "bearer", "token": "tok-123"}, ("authorization", "Bearer tok-123"), {}),
        (
            {"type": "basic", "username": "ann", "password": "pw:1"},
            ("authorization", "Basic " + base64.b64encode(b"ann:pw:1").decode()),
            {},
        ),
        (
            {"type": "api_key", "name": "X-Api-Key", "value": "k-1", "location": "header"},
            ("x-api-key", "k-1"),
            {},
        ),
        (
            {"type": "api_key", "name": "api_key", "value": "k-2", "location": "query"},
            None,
            {"api_key": "k-2"},
        ),
    ],
)
async def test_api_auth_reaches_the_server(
    api: Callable[..., ApiConnector],
    site: Site,
    auth: dict[str, Any],
    expect_header: tuple[str, str] | None,
    expect_query: dict[str, str],
) -> None:
    await api(auth=auth).query("echo", None, max_rows=10)
    seen = site.last
    if expect_header is None:
        assert "authorization" not in seen.headers
    else:
        assert seen.headers[expect_header[0]] == expect_header[1]
    assert seen.query == expect_query


async def test_api_response_shapes(api: Callable[..., ApiConnector]) -> None:
    names = await api(response_path="data.items[?price > `2`].name").query(
        "items", None, max_rows=10
    )
    assert names.rows == [{"value": "苹果"}, {"value": "cherry"}]
    assert names.columns == ["value"]
    scalars = await api().query("scalars", None, max_rows=10)
    assert scalars.rows == [{"value": 1}, {"value": "two"}, {"value": None}, {"value": True}]
    whole = await api().query("items", None, max_rows=10)
    assert whole.count == 1
    assert whole.rows[0]["data"]["total"] == 3
    nothing = await api(response_path="data.missing").query("items", None, max_rows=10)
    assert (nothing.rows, nothing.count) == ([], 0)
    empty = await api().query("empty", None, max_rows=10)
    assert empty.rows == []
    limited = await api(response_path="data.items").query("items", None, max_rows=2)
    assert (limited.count, limited.truncated) == (2, True)
    assert limited.rows == ITEMS[:2]


async def test_api_errors_say_the_status(api: Callable[..., ApiConnector]) -> None:
    cases = [
        ("missing", "not_found", "404"),
        ("broken", "failed", "500"),
        ("text", "failed", "200"),
    ]
    for path, kind, status in cases:
        with pytest.raises(ConnectorError) as caught:
            await api().query(path, None, max_rows=10)
        assert caught.value.kind == kind, path
        assert status in caught.value.render("en"), path
    with pytest.raises(ConnectorError) as caught:
        await api().query("text", None, max_rows=10)
    assert "JSON" in caught.value.render("zh")


async def test_api_error_messages_hide_secrets(api: Callable[..., ApiConnector]) -> None:
    connector = api(auth={"type": "bearer", "token": "very-secret-token"})
    with pytest.raises(ConnectorError) as caught:
        await connector.query("private", None, max_rows=10)
    assert caught.value.kind == "auth"
    text = caught.value.render("en") + caught.value.render("zh") + repr(caught.value)
    assert "401" in text
    assert "very-secret-token" not in text
    assert "******" in text
    assert "very-secret-token" not in repr(connector)


async def test_api_loopback_refused_without_the_policy(api: Callable[..., ApiConnector]) -> None:
    connector = api(policy=OutboundPolicy())
    with pytest.raises(ConnectorError) as caught:
        await connector.test()
    assert caught.value.kind == "refused"
    assert "127.0.0.1" in caught.value.render("en")
    # A redirect elsewhere is checked again (127.0.0.2 is not allowed).
    with pytest.raises(ConnectorError) as caught:
        await api().query("redirect-out", None, max_rows=10)
    assert caught.value.kind == "refused"


@pytest.mark.parametrize(
    "path",
    [
        "../admin",
        "items/../../admin",
        "%2e%2e/admin",
        "..%5cadmin",
        "http://evil.example/x",
        "//evil.example/x",
    ],
)
async def test_api_query_stays_under_the_base_url(
    api: Callable[..., ApiConnector], site: Site, path: str
) -> None:
    with pytest.raises(ConnectorError) as caught:
        await api().query(path, None, max_rows=10)
    assert caught.value.kind == "refused"
    assert site.server.seen == []


async def test_api_unreachable(site: Site) -> None:
    port = free_port()
    settings = ConnectorSettings(outbound=LOOPBACK)
    config = ApiConfig(base_url=f"http://127.0.0.1:{port}/api", timeout=3)
    connector = build_connector("api", config, settings)
    with pytest.raises(ConnectorError) as caught:
        await connector.test()
    assert caught.value.kind == "unreachable"
    await connector.close()
    unknown = build_connector("api", ApiConfig(base_url="http://no-such-api.invalid/"), settings)
    with pytest.raises(ConnectorError) as caught:
        await unknown.test()
    assert caught.value.kind == "unreachable"
    await unknown.close()


# -- json ----------------------------------------------------------------------------------

DOCUMENT = {
    "users": [
        {"name": "张三", "age": 31, "tags": ["a"]},
        {"name": "Ann", "age": 25, "tags": []},
        {"name": "Bob", "age": 40, "tags": ["b", "c"]},
    ],
    "meta": {"version": 2},
}


OWNER = "6f1c2b8e-0000-4000-8000-00000000000a"  # json sources read <json_dir>/<owner>/...
OTHER = "6f1c2b8e-0000-4000-8000-00000000000b"


def _json(tmp_path: Path, owner: str = OWNER, **config: Any) -> JsonConnector:
    settings = ConnectorSettings(json_dir=tmp_path / "json", max_rows=100)
    connector = build_connector("json", JsonConfig(**config), settings, owner_id=owner)
    assert isinstance(connector, JsonConnector)
    return connector


def _unchecked_json(tmp_path: Path, file: str) -> JsonConnector:
    """A connector whose config skipped validation, as if the check had been bypassed."""
    settings = ConnectorSettings(json_dir=tmp_path / "json")
    config = JsonConfig.model_construct(data=None, file=file)
    return JsonConnector(config, settings, tmp_path / "json" / OWNER)


async def test_json_inline_with_jmespath(tmp_path: Path) -> None:
    connector = _json(tmp_path, data=DOCUMENT)
    older = await connector.query("users[?age > `30`].name", None, max_rows=10)
    assert older.rows == [{"value": "张三"}, {"value": "Bob"}]
    users = await connector.query("users", None, max_rows=2)
    assert users.rows == DOCUMENT["users"][:2]  # type: ignore[index]
    assert (users.count, users.truncated, users.columns) == (2, True, ["name", "age", "tags"])
    whole = await connector.query("", None, max_rows=10)
    assert whole.rows == [DOCUMENT]
    assert await connector.test() == "JSON 对象,共 2 个键"
    assert await connector.test(language="en") == "JSON object with 2 keys"
    with pytest.raises(ConnectorError) as caught:
        await connector.query("users[?age >", None, max_rows=10)
    assert caught.value.kind == "bad_query"


async def test_json_file(tmp_path: Path) -> None:
    directory = tmp_path / "json" / OWNER / "shop"
    directory.mkdir(parents=True)
    (directory / "users.json").write_text(json.dumps(DOCUMENT["users"]), encoding="utf-8")
    connector = _json(tmp_path, file="shop/users.json")
    assert await connector.test() == "JSON 数组,共 3 项"
    result = await connector.query(
        "[?contains(tags, 'b')].{who: name, years: age}", None, max_rows=10
    )
    assert result.rows == [{"who": "Bob", "years": 40}]


async def test_json_file_problems(tmp_path: Path) -> None:
    (tmp_path / "json" / OWNER).mkdir(parents=True)
    with pytest.raises(ConnectorError) as caught:
        await _json(tmp_path, file="missing.json").test()
    assert caught.value.kind == "not_found"
    assert "missing.json" in caught.value.render("zh")
    (tmp_path / "json" / OWNER / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ConnectorError) as caught:
        await _json(tmp_path, file="broken.json").query("", None, max_rows=10)
    assert caught.value.kind == "bad_query"


@pytest.mark.parametrize("file", ["../secret.json", "a/../../secret.json", "/etc/passwd"])
def test_json_config_refuses_escaping_paths(file: str) -> None:
    with pytest.raises(ValidationError):
        JsonConfig(file=file)


@pytest.mark.parametrize("file", ["../secret.json", "a/../../secret.json", "/etc/passwd"])
async def test_json_connector_refuses_escaping_paths(tmp_path: Path, file: str) -> None:
    (tmp_path / "json" / OWNER / "a").mkdir(parents=True)
    (tmp_path / "json" / "secret.json").write_text('{"password": "x"}', encoding="utf-8")
    (tmp_path / "secret.json").write_text('{"password": "x"}', encoding="utf-8")
    with pytest.raises(ConnectorError) as caught:
        await _unchecked_json(tmp_path, file).query("", None, max_rows=10)
    assert caught.value.kind == "refused"


async def test_json_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "json" / OWNER
    root.mkdir(parents=True)
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": true}', encoding="utf-8")
    (root / "escape.json").symlink_to(outside)
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "real.json").write_text("[1, 2]", encoding="utf-8")
    (root / "alias.json").symlink_to(root / "real.json")
    for file in ("escape.json", "escape-dir/outside.json"):
        with pytest.raises(ConnectorError) as caught:
            await _json(tmp_path, file=file).query("", None, max_rows=10)
        assert caught.value.kind == "refused", file
    inside = await _json(tmp_path, file="alias.json").query("", None, max_rows=10)
    assert inside.rows == [{"value": 1}, {"value": 2}]


async def test_json_files_are_their_owners_own(tmp_path: Path) -> None:
    """User B names user A's file every way it could be reached: not found, or refused."""
    mine = tmp_path / "json" / OWNER
    mine.mkdir(parents=True)
    (mine / "salaries.json").write_text('[{"name": "王", "pay": 9000}]', encoding="utf-8")
    (tmp_path / "json" / OTHER).mkdir()
    shared = tmp_path / "json" / "salaries.json"  # where every user's files used to be
    shared.write_text('[{"name": "旧"}]', encoding="utf-8")
    assert (await _json(tmp_path, file="salaries.json").query("", None, max_rows=5)).count == 1
    with pytest.raises(ConnectorError) as caught:
        await _json(tmp_path, owner=OTHER, file="salaries.json").query("", None, max_rows=5)
    assert caught.value.kind == "not_found"
    with pytest.raises(ValidationError):  # the config refuses `..` before any connector
        JsonConfig(file=f"../{OWNER}/salaries.json")
    other = JsonConnector(
        JsonConfig.model_construct(data=None, file=f"../{OWNER}/salaries.json"),
        ConnectorSettings(json_dir=tmp_path / "json"),
        tmp_path / "json" / OTHER,
    )
    with pytest.raises(ConnectorError) as caught:
        await other.query("", None, max_rows=5)
    assert caught.value.kind == "refused"
    (tmp_path / "json" / OTHER / "alias.json").symlink_to(mine / "salaries.json")
    with pytest.raises(ConnectorError) as caught:
        await _json(tmp_path, owner=OTHER, file="alias.json").query("", None, max_rows=5)
    assert caught.value.kind == "refused"


def test_json_connectors_need_their_owner(tmp_path: Path) -> None:
    settings = ConnectorSettings(json_dir=tmp_path)
    with pytest.raises(TypeError):
        build_connector("json", JsonConfig(file="a.json"), settings)


# -- the pool ------------------------------------------------------------------------------


async def _eventually(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_pool_keeps_one_connector_per_source_and_version(site: Site) -> None:
    pool = ConnectorPool(ConnectorSettings(outbound=LOOPBACK))
    first = ApiConfig(base_url=site.base)
    second = ApiConfig(base_url=site.base + "/items")
    one = await pool.get("s1", 1, "api", first, owner_id=OWNER)
    assert await pool.get("s1", 1, "api", first, owner_id=OWNER) is one
    assert isinstance(one, ApiConnector)
    two = await pool.get("s1", 2, "api", second, owner_id=OWNER)
    assert two is not one
    # A late caller with the older version gets the newer connector, not a rebuild.
    assert await pool.get("s1", 1, "api", first, owner_id=OWNER) is two
    await _eventually(lambda: one._http.is_closed)
    other = await pool.get("s2", 1, "json", JsonConfig(data=[1]), owner_id=OWNER)
    assert len(pool) == 2
    await pool.drop("s2")
    assert len(pool) == 1
    assert (await other.query("", None, max_rows=5)).count == 1
    await pool.close()
    assert isinstance(two, ApiConnector)
    assert two._http.is_closed
    with pytest.raises(RuntimeError):
        await pool.get("s1", 3, "api", first, owner_id=OWNER)


async def test_pool_drop_soon_from_another_thread(site: Site) -> None:
    pool = ConnectorPool(ConnectorSettings(outbound=LOOPBACK))
    connector = await pool.get("s1", 1, "api", ApiConfig(base_url=site.base), owner_id=OWNER)
    assert isinstance(connector, ApiConnector)
    await asyncio.to_thread(pool.drop_soon, "s1")
    await _eventually(lambda: len(pool) == 0 and connector._http.is_closed)
    pool.drop_soon("unknown")  # nothing to drop: no error
    await pool.close()


def test_build_connector_checks_the_config_type() -> None:
    with pytest.raises(TypeError):
        build_connector("mysql", JsonConfig(data=[1]), ConnectorSettings())
