from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.auth.settings import AuthSettings
from services.datasources.settings import DataSourcesSettings
from services.executor.settings import WorkerSettings
from services.gateway.settings import GatewaySettings
from shared.settings import DEFAULT_JWT_SECRET, PlatformSettings

STRONG = "x" * 40


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("AGENTFLOW_") or key == "NATS_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir("/")  # no .env file is read from the repository


def test_production_refuses_the_default_secret() -> None:
    with pytest.raises(ValidationError, match="AGENTFLOW_JWT_SECRET"):
        PlatformSettings()


def test_production_refuses_a_short_secret() -> None:
    with pytest.raises(ValidationError, match="32"):
        PlatformSettings(jwt_secret="short-secret")


def test_development_accepts_the_default_secret() -> None:
    settings = PlatformSettings(environment="development")
    assert settings.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET


def test_workers_need_the_query_key_and_not_the_jwt_secret() -> None:
    """In production a worker starts without AGENTFLOW_JWT_SECRET (it never signs a user's
    token) but not without its own query key; the data sources service needs both."""
    fernet = "ZGV2LW9ubHktZmVybmV0LWtleS1hZ2VudGZsb3ctMDE="
    with pytest.raises(ValidationError, match="AGENTFLOW_DATASOURCE_QUERY_KEY"):
        WorkerSettings()
    with pytest.raises(ValidationError, match="32"):
        WorkerSettings(datasource_query_key="short")
    worker = WorkerSettings(datasource_query_key=STRONG)
    assert worker.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET  # unused by workers
    with pytest.raises(ValidationError, match="AGENTFLOW_DATASOURCE_QUERY_KEY"):
        DataSourcesSettings(jwt_secret=STRONG, secrets_keys=fernet)
    DataSourcesSettings(jwt_secret=STRONG, datasource_query_key=STRONG, secrets_keys=fernet)
    with pytest.raises(ValidationError, match="AGENTFLOW_JWT_SECRET"):
        DataSourcesSettings(datasource_query_key=STRONG, secrets_keys=fernet)
    AuthSettings(jwt_secret=STRONG)  # the query key is not auth's to hold


def test_environment_variables_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_JWT_SECRET", STRONG)
    monkeypatch.setenv("AGENTFLOW_STORE", "postgres")
    monkeypatch.setenv("NATS_URL", "nats://nats.example:4222")
    monkeypatch.setenv("AGENTFLOW_AUTH_PORT", "9101")
    monkeypatch.setenv("AGENTFLOW_GATEWAY_PORT", "9037")
    auth, gateway = AuthSettings(), GatewaySettings()
    assert auth.nats_url == "nats://nats.example:4222"
    assert auth.store == "postgres"
    assert (auth.port, gateway.port) == (9101, 9037)


def test_prefixed_nats_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_NATS_URL", "nats://a:1")
    monkeypatch.setenv("NATS_URL", "nats://b:2")
    assert PlatformSettings(jwt_secret=STRONG).nats_url == "nats://a:1"


def test_sqlite_store_is_one_file_per_service(tmp_path) -> None:
    env = AuthSettings(jwt_secret=STRONG, data_dir=tmp_path).event_store_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == str(tmp_path / "auth.sqlite")


def test_postgres_store_is_one_schema_per_service() -> None:
    settings = AuthSettings(
        jwt_secret=STRONG, store="postgres", postgres_dbname="db1", postgres_schema_prefix="p1_"
    )
    env = settings.event_store_env()
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.postgres"
    assert env["POSTGRES_SCHEMA"] == "p1_auth"
    assert env["POSTGRES_DBNAME"] == "db1"


def test_secrets_do_not_show_in_repr() -> None:
    settings = PlatformSettings(jwt_secret=STRONG, postgres_password="pg-secret-value")
    assert STRONG not in repr(settings)
    assert "pg-secret-value" not in repr(settings)


def test_bare_port_and_host_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Process managers (honcho, foreman) export PORT to every process: it moves no service."""
    monkeypatch.setenv("PORT", "5100")
    monkeypatch.setenv("HOST", "10.0.0.1")
    auth, gateway = AuthSettings(jwt_secret=STRONG), GatewaySettings(jwt_secret=STRONG)
    assert (auth.port, gateway.port) == (8101, 8037)
    assert gateway.host == "0.0.0.0"
    assert AuthSettings(jwt_secret=STRONG, port=9999).port == 9999
