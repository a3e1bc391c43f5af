"""Credentials a data source refuses are the user's mistake: 400 DATA_SOURCE_AUTH_FAILED, not
502. A PostgreSQL of the test's own that asks for passwords (scram-sha-256) shows a wrong
password honestly (the machine's server trusts every password); a node that queries through
the data sources service names the same code and is not retried."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import psycopg
import pytest

from services.datasources.api import (
    QueryFailed,
    QueryTimeout,
    SourceAuthFailed,
    SourceUnreachable,
    _query_error,
)
from services.datasources.configs import PostgresConfig
from services.datasources.connectors import ConnectorError, ConnectorSettings, build_connector
from services.datasources.connectors.base import AUTH_FAILED, UNREACHABLE
from services.executor.worker.datasources_client import DataSourceQueryError, DataSourcesClient
from shared.i18n import Message
from shared.net.outbound import OutboundPolicy
from shared.security.grants import QueryGrants
from shared.settings import PlatformSettings
from tests.support.http_servers import QuietHandler, serving
from tests.support.private_postgres import PrivatePostgres, require_private_postgres

SETTINGS = ConnectorSettings(
    connect_timeout_s=3,
    statement_timeout_s=5,
    outbound=OutboundPolicy.from_strings(["127.0.0.1/32"]),
)
READER = "reader"
OWNER = "11111111-1111-4111-8111-111111111111"


@pytest.fixture(scope="module")
def password_postgres() -> Iterator[dict[str, Any]]:
    """A cluster whose loopback clients other than the superuser must give a password."""
    require_private_postgres()
    server = PrivatePostgres().create()
    password = secrets.token_hex(12)
    try:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"CREATE ROLE {READER} LOGIN PASSWORD '{password}'")  # hex: safe
        hba = server.data_dir / "pg_hba.conf"
        hba.write_text(
            f"host all postgres {server.host}/32 trust\n"
            f"host all all {server.host}/32 scram-sha-256\n"
        )
        server.stop()
        server.start()
        yield {
            "host": server.host,
            "port": server.port,
            "database": "agentflow",
            "username": READER,
            "password": password,
        }
    finally:
        server.destroy()


async def _refusal(config: dict[str, Any]) -> ConnectorError:
    connector = build_connector("postgresql", PostgresConfig(**config), SETTINGS)
    try:
        with pytest.raises(ConnectorError) as caught:
            await connector.query("SELECT 1 AS one", None, max_rows=1)
        return caught.value
    finally:
        await connector.close()


async def test_a_wrong_postgres_password_is_refused_credentials(
    password_postgres: dict[str, Any],
) -> None:
    right = build_connector("postgresql", PostgresConfig(**password_postgres), SETTINGS)
    try:
        assert (await right.query("SELECT 1 AS one", None, max_rows=1)).rows == [{"one": 1}]
    finally:
        await right.close()
    wrong = await _refusal({**password_postgres, "password": "not-the-password"})
    assert wrong.kind == "auth"
    none = await _refusal({**password_postgres, "password": None})
    assert none.kind == "auth"  # a password required, none given
    assert "not-the-password" not in wrong.render("zh") + wrong.render("en")
    http = _query_error(wrong, "en")
    assert isinstance(http, SourceAuthFailed)
    assert (http.status_code, http.error_code) == (400, "DATA_SOURCE_AUTH_FAILED")
    assert http.detail("en").startswith("The data source refused the credentials; check")
    assert http.detail("zh").startswith("数据源拒绝了所给的凭据")


def test_only_refused_credentials_become_data_source_auth_failed() -> None:
    def error(kind: Any, message: Message, **params: Any) -> Exception:
        return _query_error(ConnectorError(kind, message, **params), "zh")

    assert isinstance(error("auth", AUTH_FAILED, user="u"), SourceAuthFailed)
    down = error("unreachable", UNREACHABLE, host="h", port=1)
    assert isinstance(down, SourceUnreachable)
    assert (down.status_code, down.error_code) == (502, "DATA_SOURCE_UNAVAILABLE")
    assert isinstance(error("timeout", UNREACHABLE, host="h", port=1), QueryTimeout)
    assert isinstance(error("not_found", UNREACHABLE, host="h", port=1), QueryFailed)
    assert isinstance(error("failed", UNREACHABLE, host="h", port=1), SourceUnreachable)


class _DataSourcesService(QuietHandler):
    """What the data sources service answers a worker: the error body by the path's id."""

    answers: ClassVar[dict[str, tuple[int, Any]]] = {
        "00000000-0000-4000-8000-000000000400": (
            400,
            {"detail": "数据源拒绝了所给的凭据", "error_code": "DATA_SOURCE_AUTH_FAILED",
             "status_code": 400},
        ),
        "00000000-0000-4000-8000-000000000502": (
            502,
            {"detail": "数据源无法连接", "error_code": "DATA_SOURCE_UNAVAILABLE",
             "status_code": 502},
        ),
        "00000000-0000-4000-8000-000000000500": (500, b"oops"),
    }  # fmt: skip

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        status, body = self.answers[self.path.split("/")[-2]]
        self.reply(status, body, content_type="application/json" if status != 500 else "text/plain")


@pytest.fixture(scope="module")
def service_url() -> Iterator[str]:
    with serving(_DataSourcesService) as url:
        yield url


async def _node_error(service_url: str, source_id: str) -> DataSourceQueryError:
    grants = QueryGrants(PlatformSettings(environment="development"))
    async with httpx.AsyncClient() as http:
        client = DataSourcesClient(http, service_url, grants)
        with pytest.raises(DataSourceQueryError) as caught:
            await client.query(OWNER, source_id, "SELECT 1")
    return caught.value


async def test_a_node_names_the_services_error_code(service_url: str) -> None:
    refused = await _node_error(service_url, "00000000-0000-4000-8000-000000000400")
    assert refused.render("en") == (
        "data source query failed (400 DATA_SOURCE_AUTH_FAILED): 数据源拒绝了所给的凭据"
    )
    assert refused.retryable is False  # the same credentials fail the same way again
    down = await _node_error(service_url, "00000000-0000-4000-8000-000000000502")
    assert "(502 DATA_SOURCE_UNAVAILABLE)" in down.render("zh")
    assert down.retryable is True
    broken = await _node_error(service_url, "00000000-0000-4000-8000-000000000500")
    assert broken.render("en") == "data source query failed (500): oops"
