"""Data sources through the gateway: real MariaDB and PostgreSQL, a local HTTP API, JSON."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pymysql
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import W, create_workflow, edge, node, wait_finished
from tests.support.databases import (
    require_mariadb,
    require_postgres,
    temporary_mariadb_database,
    temporary_postgres_source,
)
from tests.support.events import wait_for_events
from tests.support.fake_llm import FakeLLM
from tests.support.http_servers import QuietHandler, serving
from tests.support.stack import Stack

D = "/api/v1/data-sources"


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


@pytest.fixture(scope="module")
def shop() -> Iterator[dict[str, Any]]:
    """A MariaDB database with a table of items, and a user allowed into it."""
    require_mariadb()
    with temporary_mariadb_database() as info:
        conn = pymysql.connect(
            host=info["host"], port=info["port"], user=info["username"],
            password=info["password"], database=info["database"], autocommit=True,
        )  # fmt: skip
        with conn, conn.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), price DECIMAL(10,2),"
                " added DATE, photo BLOB)"
            )
            cursor.executemany(
                "INSERT INTO items VALUES (%s, %s, %s, %s, %s)",
                [(1, "苹果", "3.50", "2026-01-02", b"\x00\x01"),
                 (2, "香蕉", "12.00", "2026-02-03", None),
                 (3, "橙子", "8.25", "2026-03-04", None)],
            )  # fmt: skip
        yield info


@pytest.fixture(scope="module")
def ledger() -> Iterator[dict[str, Any]]:
    require_postgres()
    with temporary_postgres_source() as info:
        with psycopg.connect(
            host=info["host"], port=info["port"], user=info["username"],
            dbname=info["database"], autocommit=True,
        ) as conn:  # fmt: skip
            conn.execute(
                "CREATE TABLE entries (id uuid PRIMARY KEY, amount numeric(12,2),"
                " at timestamptz, meta jsonb, raw bytea)"
            )
            conn.execute(
                "INSERT INTO entries VALUES ('6f1c2b8e-0000-4000-8000-000000000001', 10.10,"
                " '2026-05-06T07:08:09+00', '{\"tag\": \"租金\"}', '\\x0102')"
            )
        yield info


def register(client: httpx.Client, source_type: str, config: dict[str, Any]) -> dict[str, Any]:
    body = {
        "name": f"{source_type} 源",
        "type": source_type,
        "description": "测试",
        "config": config,
    }
    response = client.post(D, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def query(client: httpx.Client, source_id: str, text: str, **extra: Any) -> httpx.Response:
    return client.post(f"{D}/{source_id}/query", json={"query": text, **extra})


def test_a_mariadb_source_from_registration_to_safe_queries(
    stack: Stack, me: httpx.Client, shop: dict[str, Any]
) -> None:
    source = register(me, "mysql", shop)
    sid = source["id"]
    assert source["config"]["password"] == "******"
    assert (source["status"], source["last_test"]) == ("inactive", None)
    assert shop["password"] not in json.dumps(me.get(f"{D}/{sid}").json())
    listed = me.get(D, params={"type": "mysql"}).json()
    assert [s["id"] for s in listed] == [sid]
    assert shop["password"] not in json.dumps(listed)

    tested = me.post(f"{D}/{sid}/test").json()
    assert tested["status"] == "success", tested
    assert "MariaDB" in tested["message"]
    assert me.get(f"{D}/{sid}").json()["status"] == "active"
    assert [s["id"] for s in me.get(D, params={"status": "active"}).json()] == [sid]

    rows = query(me, sid, "SELECT * FROM items ORDER BY id").json()
    assert rows["count"] == 3
    assert rows["columns"] == ["id", "name", "price", "added", "photo"]
    assert rows["data"][0] == {"id": 1, "name": "苹果", "price": "3.50", "added": "2026-01-02",
                               "photo": "AAE="}  # fmt: skip
    named = query(me, sid, "SELECT name FROM items WHERE price > %(min)s ORDER BY id",
                  parameters={"min": 5}).json()  # fmt: skip
    assert [r["name"] for r in named["data"]] == ["香蕉", "橙子"]
    limited = query(me, sid, "SELECT id FROM items ORDER BY id", limit=2).json()
    assert (limited["count"], limited["truncated"]) == (2, True)

    for refused in (
        "DROP TABLE items",
        "INSERT INTO items (id) VALUES (9)",
        "UPDATE items SET price = 0",
        "SELECT 1; DROP TABLE items",
        "/*!50000 DROP TABLE items */",
        "SELECT * FROM items INTO OUTFILE '/tmp/x'",
        "SELECT * FROM items FOR UPDATE",
    ):
        body = assert_error(query(me, sid, refused), 400, "QUERY_REFUSED")
        assert body["detail"]
    assert_error(query(me, sid, "SELECT nope FROM items"), 400, "QUERY_FAILED")
    assert query(me, sid, "SELECT COUNT(*) AS n FROM items").json()["data"] == [{"n": 3}]

    other, _ = stack.user_client()
    with other:
        assert_error(other.get(f"{D}/{sid}"), 404, "DATA_SOURCE_NOT_FOUND")
        assert_error(query(other, sid, "SELECT 1"), 404, "DATA_SOURCE_NOT_FOUND")
        assert_error(other.post(f"{D}/{sid}/test"), 404, "DATA_SOURCE_NOT_FOUND")
        assert_error(other.put(f"{D}/{sid}", json={"name": "x"}), 404, "DATA_SOURCE_NOT_FOUND")
        assert_error(other.delete(f"{D}/{sid}"), 404, "DATA_SOURCE_NOT_FOUND")
        assert other.get(D).json() == []

    # A partial update keeps the password; a masked one sent back keeps it too.
    renamed = me.put(f"{D}/{sid}", json={"name": "商品库", "config": {"password": "******"}})
    assert renamed.status_code == 200, renamed.text
    assert me.post(f"{D}/{sid}/test").json()["status"] == "success"
    wrong = me.put(f"{D}/{sid}", json={"config": {"password": "wrong-password"}}).json()
    assert wrong["status"] == "inactive"
    failed = me.post(f"{D}/{sid}/test").json()
    assert (failed["status"], failed["error_kind"]) == ("failed", "auth")
    assert "wrong-password" not in failed["message"]
    assert me.get(f"{D}/{sid}").json()["status"] == "error"
    assert_error(query(me, sid, "SELECT 1"), 400, "DATA_SOURCE_AUTH_FAILED")
    me.put(f"{D}/{sid}", json={"config": {"password": shop["password"]}}).raise_for_status()

    unknown = register(me, "mysql", {**shop, "host": "no-such-host.invalid"})
    unreachable = me.post(f"{D}/{unknown['id']}/test").json()
    assert (unreachable["status"], unreachable["error_kind"]) == ("failed", "unreachable")

    # Its own source's events (the platform is shared): registered, 3 updates, 3 tests.
    events = wait_for_events(stack.nats.url, f"events.datasource.{sid}.>", at_least=7)
    assert len(events) >= 7, [e.envelope["type"] for e in events]
    stream_text = json.dumps([e.envelope for e in events])
    assert shop["password"] not in stream_text
    assert "wrong-password" not in stream_text

    assert me.delete(f"{D}/{sid}").json()["message"]
    assert_error(me.get(f"{D}/{sid}"), 404, "DATA_SOURCE_NOT_FOUND")


def test_a_postgresql_source_encodes_its_types(me: httpx.Client, ledger: dict[str, Any]) -> None:
    source = register(me, "postgresql", ledger)
    assert me.post(f"{D}/{source['id']}/test").json()["status"] == "success"
    rows = query(me, source["id"], "SELECT * FROM entries").json()["data"]
    assert rows == [{
        "id": "6f1c2b8e-0000-4000-8000-000000000001",
        "amount": "10.10",
        "at": "2026-05-06T07:08:09+00:00",
        "meta": {"tag": "租金"},
        "raw": "AQI=",
    }]  # fmt: skip
    cte = "WITH gone AS (DELETE FROM entries RETURNING *) SELECT * FROM gone"
    assert_error(query(me, source["id"], cte), 400, "QUERY_REFUSED")
    assert query(me, source["id"], "SELECT count(*) AS n FROM entries").json()["data"] == [{"n": 1}]
    bad = me.post(D, json={"name": "坏", "type": "postgresql", "config": {"host": "x"}})
    assert_error(bad, 422, "INVALID_DATA_SOURCE_CONFIG")


class _Catalog(QuietHandler):
    def do_GET(self) -> None:
        if self.headers.get("authorization") != "Bearer catalog-token":
            self.reply(401, b"")
            return
        self.reply(200, {"items": [{"sku": "a", "path": self.path}, {"sku": "b"}]})


@pytest.fixture(scope="module")
def catalog_url() -> Iterator[str]:
    with serving(_Catalog) as url:
        yield url


def test_an_api_source_and_a_json_source(stack: Stack, me: httpx.Client, catalog_url: str) -> None:
    config = {"base_url": catalog_url, "auth": {"type": "bearer", "token": "catalog-token"},
              "response_path": "items"}  # fmt: skip
    api = register(me, "api", config)
    assert api["config"]["auth"]["token"] == "******"
    assert me.post(f"{D}/{api['id']}/test").json()["status"] == "success"
    result = query(me, api["id"], "/v1/items?kind={kind}", parameters={"kind": "fruit"}).json()
    assert result["data"] == [{"sku": "a", "path": "/v1/items?kind=fruit"}, {"sku": "b"}]
    events = wait_for_events(stack.nats.url, f"events.datasource.{api['id']}.>", at_least=2)
    assert "catalog-token" not in json.dumps([e.envelope for e in events])

    doc = register(me, "json", {"data": {"people": [{"name": "王", "age": 30},
                                                    {"name": "李", "age": 17}]}})  # fmt: skip
    adults = query(me, doc["id"], "people[?age >= `18`]").json()
    assert adults["data"] == [{"name": "王", "age": 30}]
    assert me.post(f"{D}/{doc['id']}/test").json()["status"] == "success"
    escape = me.post(D, json={"name": "坏", "type": "json", "config": {"file": "../../etc/passwd"}})
    assert_error(escape, 422, "INVALID_DATA_SOURCE_CONFIG")


def test_workflows_query_their_owners_data_sources(
    stack: Stack, me: httpx.Client, shop: dict[str, Any], fake_llm: FakeLLM
) -> None:
    source = register(me, "mysql", shop)
    flow = {
        "name": "查库存",
        "nodes": [
            node("start-1", "start"),
            node(
                "query-1",
                "transform",
                mode="data_source",
                data_source_id=source["id"],
                query="SELECT name, price FROM items WHERE price >= %(min)s ORDER BY id",
                parameters={"min": "{input.min}"},
            ),
            node("end-1", "end", output={"names": "{query-1.data}", "n": "{query-1.count}"}),
        ],
        "edges": [edge("start-1", "query-1"), edge("query-1", "end-1")],
    }
    wid = create_workflow(me, flow)
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"min": 8}}).json()
    record = wait_finished(me, run["id"])
    assert record["status"] == "completed", record
    assert record["output_data"] == {
        "names": [{"name": "香蕉", "price": "12.00"}, {"name": "橙子", "price": "8.25"}],
        "n": 2,
    }
    # An input crafted as SQL stays a value.
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"min": "0 OR 1=1"}}).json()
    assert wait_finished(me, run["id"])["output_data"]["n"] in (0, 3)

    marker = uuid.uuid4().hex[:8]
    count_items = '{"query": "SELECT COUNT(*) AS n FROM items"}'
    calls = f"[[call=data_source_query:{count_items}]] {marker}"
    agent = node("agent-1", "agent", prompt=calls,
                 tools=[{"type": "data_source_query", "data_source_id": source["id"]}])  # fmt: skip
    agent_flow = {
        "name": "智能体查库",
        "nodes": [node("start-1", "start"), agent, node("end-1", "end")],
        "edges": [edge("start-1", "agent-1"), edge("agent-1", "end-1")],
    }
    run = me.post(f"{W}/{create_workflow(me, agent_flow)}/execute").json()
    record = wait_finished(me, run["id"])
    assert record["status"] == "completed", record
    trace = record["output_data"]["tool_calls"]
    assert trace[0]["ok"] is True
    assert json.loads(trace[0]["result"]) == {"rows": [{"n": 3}], "count": 1}

    # Another user's workflow cannot reach this source, even knowing its id.
    other, _ = stack.user_client()
    with other:
        theirs = create_workflow(other, flow)
        run = other.post(f"{W}/{theirs}/execute", json={"input_data": {"min": 1}}).json()
        record = wait_finished(other, run["id"])
        assert record["status"] == "failed"
        assert "404" in record["nodes"]["query-1"]["error"]
