"""Issue 13, the data sources' items, against a running platform that allows no private
network (`AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=[]`, the default):

- 4: a mysql or postgresql source cannot reach 127.0.0.1 (the platform's own databases, or
  anything listening there); every refused target answers the same, so `/test` neither scans
  ports nor checks passwords; `/test` and `/query` are rate-limited per user (429);
- 14 (part): a user has at most AGENTFLOW_MAX_DATA_SOURCES_PER_USER sources (429
  QUOTA_EXCEEDED);
- 15: json files live in their owner's directory; another user cannot read them.

Connector-level proofs (DNS rebinding, every private range, nothing connected) are in
tests/unit/datasources/test_sql_outbound.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.support.attack import SUITE_BACKENDS
from tests.support.databases import (
    require_mariadb,
    require_postgres,
    temporary_mariadb_database,
    temporary_postgres_source,
)
from tests.support.fake_llm import FakeLLM
from tests.support.platform_fixtures import module_platform
from tests.support.processes import free_port
from tests.support.stack import Stack

D = "/api/v1/data-sources"
MAX_SOURCES, MAX_TESTS, MAX_QUERIES = 3, 6, 6


@pytest.fixture(scope="module")
def json_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("json-sources")


@pytest.fixture(scope="module", params=SUITE_BACKENDS)
def platform(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_llm: FakeLLM,
    json_dir: Path,
) -> Iterator[Stack]:
    settings = {
        "AGENTFLOW_OUTBOUND_ALLOW_NETWORKS": "[]",
        "AGENTFLOW_MAX_DATA_SOURCES_PER_USER": str(MAX_SOURCES),
        "AGENTFLOW_MAX_DATA_SOURCE_TESTS_PER_MINUTE_PER_USER": str(MAX_TESTS),
        "AGENTFLOW_MAX_DATA_SOURCE_QUERIES_PER_MINUTE_PER_USER": str(MAX_QUERIES),
        "AGENTFLOW_JSON_DIR": str(json_dir),
    }
    with module_platform(request, tmp_path_factory, fake_llm, settings) as running:
        yield running


def _register(client: httpx.Client, source_type: str, config: dict[str, Any]) -> str:
    made = client.post(D, json={"name": "源", "type": source_type, "config": config})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_sql_sources_cannot_reach_the_platforms_own_network(platform: Stack) -> None:
    """The review's attack: a user's mysql/postgresql source aimed at 127.0.0.1, with right
    and wrong passwords, at open and closed ports. Before, `/test` answered success, `auth`
    or `unreachable` depending on the target; now one refusal for all, and no connection."""
    require_mariadb()
    require_postgres()
    with temporary_mariadb_database() as shop, temporary_postgres_source() as ledger:
        targets = {
            "mariadb, right password": ("mysql", shop),
            "mariadb, wrong password": ("mysql", {**shop, "password": "guess-123"}),
            "postgresql": ("postgresql", ledger),
            "closed port": ("mysql", {**shop, "port": free_port()}),
        }
        answers: dict[str, tuple[str, str]] = {}
        names = list(targets)
        for batch in (names[:2], names[2:]):  # within one user's quota
            client, _ = platform.user_client()
            with client:
                for name in batch:
                    source_type, config = targets[name]
                    sid = _register(client, source_type, config)
                    tested = client.post(f"{D}/{sid}/test")
                    assert tested.status_code == 200, tested.text
                    body = tested.json()
                    assert (body["status"], body["error_kind"]) == ("failed", "refused"), name
                    refused = assert_error(
                        client.post(f"{D}/{sid}/query", json={"query": "SELECT 1"}),
                        400,
                        "QUERY_REFUSED",
                    )
                    answers[name] = (body["message"], refused["detail"])
                    assert client.get(f"{D}/{sid}").json()["status"] == "error"
    assert len(set(answers.values())) == 1, answers
    message, detail = answers[names[0]]
    assert "127.0.0.1" in message
    assert "不允许" in message
    for leak in ("3306", "5432", "password", "密码", "MariaDB", "PostgreSQL"):
        assert leak not in message + detail, leak


def test_data_sources_per_user_are_bounded(platform: Stack) -> None:
    client, _ = platform.user_client()
    with client:
        made = [_register(client, "json", {"data": [i]}) for i in range(MAX_SOURCES)]
        over = client.post(D, json={"name": "多", "type": "json", "config": {"data": []}})
        body = assert_error(over, 429, "QUOTA_EXCEEDED")
        assert str(MAX_SOURCES) in body["detail"]
        assert len(client.get(D).json()) == MAX_SOURCES
        assert client.delete(f"{D}/{made[0]}").status_code == 200
        _register(client, "json", {"data": []})  # a place freed
    other, _ = platform.user_client()
    with other:
        _register(other, "json", {"data": []})  # another user's quota is their own


def test_tests_and_queries_are_rate_limited_per_user(platform: Stack) -> None:
    client, _ = platform.user_client()
    with client:
        sid = _register(client, "json", {"data": [{"n": 1}]})
        for _ in range(MAX_QUERIES):
            assert client.post(f"{D}/{sid}/query", json={"query": ""}).status_code == 200
        limited = client.post(f"{D}/{sid}/query", json={"query": ""})
        body = assert_error(limited, 429, "DATA_SOURCE_RATE_LIMITED")
        assert str(MAX_QUERIES) in body["detail"]
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        for _ in range(MAX_TESTS):
            assert client.post(f"{D}/{sid}/test").json()["status"] == "success"
        limited = client.post(f"{D}/{sid}/test")
        assert_error(limited, 429, "DATA_SOURCE_RATE_LIMITED")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert client.get(f"{D}/{sid}").status_code == 200  # the rest still answers
    other, _ = platform.user_client()
    with other:
        mine = _register(other, "json", {"data": []})
        assert other.post(f"{D}/{mine}/query", json={"query": ""}).status_code == 200


def test_json_files_are_their_owners_own(platform: Stack, json_dir: Path) -> None:
    alice, alice_user = platform.user_client()
    bob, bob_user = platform.user_client()
    salaries = [{"name": "王", "pay": 9000}]
    (json_dir / alice_user["id"]).mkdir()
    (json_dir / alice_user["id"] / "salaries.json").write_text(json.dumps(salaries), "utf-8")
    # Where every user's files used to be: nobody reads it any more.
    (json_dir / "salaries.json").write_text(json.dumps(salaries), "utf-8")
    with alice, bob:
        mine = _register(alice, "json", {"file": "salaries.json"})
        assert alice.post(f"{D}/{mine}/query", json={"query": ""}).json()["data"] == salaries
        theirs = _register(bob, "json", {"file": "salaries.json"})
        tested = bob.post(f"{D}/{theirs}/test").json()
        assert (tested["status"], tested["error_kind"]) == ("failed", "not_found")
        assert_error(bob.post(f"{D}/{theirs}/query", json={"query": ""}), 400, "QUERY_FAILED")
        for sneaky in (f"../{alice_user['id']}/salaries.json", f"/{alice_user['id']}/x.json"):
            made = bob.post(D, json={"name": "偷", "type": "json", "config": {"file": sneaky}})
            assert_error(made, 422, "INVALID_DATA_SOURCE_CONFIG")
        nested = _register(bob, "json", {"file": f"{alice_user['id']}/salaries.json"})
        tested = bob.post(f"{D}/{nested}/test").json()
        assert (tested["status"], tested["error_kind"]) == ("failed", "not_found")
    assert bob_user["id"] != alice_user["id"]
