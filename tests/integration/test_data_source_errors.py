"""Whose fault a failed data source query is, as the API and a workflow say it: credentials the
source refused are the user's to fix (400 DATA_SOURCE_AUTH_FAILED, not retried); a source
that is down is not (502 DATA_SOURCE_UNAVAILABLE, retried by a node's retry policy).

One platform on SQLite: the store plays no part in how a data source answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_data_sources import D, query, register
from tests.integration.test_executions import W, create_workflow, edge, node, wait_finished
from tests.support.databases import (
    require_mariadb,
    require_postgres,
    temporary_mariadb_database,
    temporary_postgres_source,
)
from tests.support.fake_llm import FakeLLM
from tests.support.http_servers import QuietHandler, serving
from tests.support.platform_fixtures import module_platform
from tests.support.processes import free_port
from tests.support.stack import Stack

WRONG = "wrong-password-3f9a"
TOKEN = "the-right-token"


@pytest.fixture(scope="module", params=["sqlite"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    with module_platform(request, tmp_path_factory, fake_llm) as running:
        yield running


@pytest.fixture(scope="module")
def mariadb() -> Iterator[dict[str, Any]]:
    require_mariadb()
    with temporary_mariadb_database() as info:
        yield info


class _Guarded(QuietHandler):
    """An API that wants a bearer token; `/forbidden` refuses even that, `/broken` fails."""

    def do_GET(self) -> None:
        if self.path.startswith("/broken"):
            self.reply(500, {"error": "internal"})
        elif self.headers.get("authorization") != f"Bearer {TOKEN}":
            self.reply(401, {"error": "who are you"})
        elif self.path.startswith("/forbidden"):
            self.reply(403, {"error": "not yours"})
        else:
            self.reply(200, [{"ok": True}])


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with serving(_Guarded) as url:
        yield url


def assert_auth_failed(me: httpx.Client, source_id: str, text: str, secret: str) -> None:
    body = assert_error(query(me, source_id, text), 400, "DATA_SOURCE_AUTH_FAILED")
    assert body["detail"].startswith("数据源拒绝了所给的凭据")
    english = me.post(
        f"{D}/{source_id}/query", json={"query": text}, headers={"Accept-Language": "en"}
    )
    assert english.json()["detail"].startswith("The data source refused the credentials")
    assert secret not in body["detail"] + english.json()["detail"]
    tested = me.post(f"{D}/{source_id}/test").json()
    assert (tested["status"], tested["error_kind"]) == ("failed", "auth")


def test_refused_credentials_are_a_400_for_every_kind_of_source(
    me: httpx.Client, mariadb: dict[str, Any], api_url: str
) -> None:
    mysql = register(me, "mysql", {**mariadb, "password": WRONG})
    assert_auth_failed(me, mysql["id"], "SELECT 1", WRONG)
    right = register(me, "mysql", mariadb)
    assert query(me, right["id"], "SELECT 1 AS one").json()["data"] == [{"one": 1}]

    stranger = register(
        me, "api", {"base_url": api_url, "auth": {"type": "bearer", "token": WRONG}}
    )
    assert_auth_failed(me, stranger["id"], "/items", WRONG)
    member = register(me, "api", {"base_url": api_url, "auth": {"type": "bearer", "token": TOKEN}})
    assert query(me, member["id"], "/items").json()["data"] == [{"ok": True}]
    assert_error(query(me, member["id"], "/forbidden"), 400, "DATA_SOURCE_AUTH_FAILED")


def test_a_postgres_role_that_does_not_exist_is_refused_credentials(me: httpx.Client) -> None:
    """The local server trusts every password from loopback, so a wrong password cannot be
    shown here (tests/unit/datasources/test_auth_failures.py does, on a server of its own);
    a role it does not know is refused the same way (SQLSTATE class 28)."""
    require_postgres()
    with temporary_postgres_source() as info:
        ghost = register(
            me, "postgresql", {**info, "username": "no_such_role_3f9a", "password": WRONG}
        )
        assert_auth_failed(me, ghost["id"], "SELECT 1", WRONG)
        missing = register(me, "postgresql", {**info, "database": "no_such_db_3f9a"})
        assert_error(query(me, missing["id"], "SELECT 1"), 400, "QUERY_FAILED")


def test_a_source_that_is_down_is_still_a_502(
    me: httpx.Client, mariadb: dict[str, Any], api_url: str
) -> None:
    closed = register(me, "mysql", {**mariadb, "port": free_port(), "connect_timeout": 2})
    assert_error(query(me, closed["id"], "SELECT 1"), 502, "DATA_SOURCE_UNAVAILABLE")
    api = register(me, "api", {"base_url": api_url})
    assert_error(query(me, api["id"], "/broken"), 502, "DATA_SOURCE_UNAVAILABLE")


def _querying(source_id: str) -> dict[str, Any]:
    retry = {"max_attempts": 3, "backoff_seconds": 0}
    return {
        "name": "查库",
        "nodes": [
            node("start-1", "start"),
            node("query-1", "transform", mode="data_source", data_source_id=source_id,
                 query="SELECT 1 AS one", retry=retry),
            node("end-1", "end"),
        ],
        "edges": [edge("start-1", "query-1"), edge("query-1", "end-1")],
    }  # fmt: skip


def test_a_node_names_the_code_and_retries_only_what_may_pass(
    me: httpx.Client, mariadb: dict[str, Any]
) -> None:
    refused = register(me, "mysql", {**mariadb, "password": WRONG})
    run = me.post(f"{W}/{create_workflow(me, _querying(refused['id']))}/execute").json()
    record = wait_finished(me, run["id"])
    assert record["status"] == "failed", record
    failed = record["nodes"]["query-1"]
    assert "400 DATA_SOURCE_AUTH_FAILED" in failed["error"], failed
    assert WRONG not in failed["error"]
    assert failed["attempt"] == 1  # the same password would be refused again

    closed = register(me, "mysql", {**mariadb, "port": free_port(), "connect_timeout": 1})
    run = me.post(f"{W}/{create_workflow(me, _querying(closed['id']))}/execute").json()
    record = wait_finished(me, run["id"])
    assert record["status"] == "failed", record
    down = record["nodes"]["query-1"]
    assert "502 DATA_SOURCE_UNAVAILABLE" in down["error"], down
    assert down["attempt"] == 3  # a source that is down may be back
