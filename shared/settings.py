"""Settings shared by every service; each service extends `ServiceSettings`.

Every variable carries the `AGENTFLOW_` prefix (e.g. `AGENTFLOW_JWT_SECRET`). `NATS_URL` is also
read without the prefix because it is the name the NATS ecosystem uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.net.outbound import OutboundPolicy

DEFAULT_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105 - the refused default
DEFAULT_QUERY_KEY = "dev-only-insecure-datasource-query-key"

Environment = Literal["development", "test", "production"]
StoreKind = Literal["sqlite", "postgres"]


class InsecureSettingsError(ValueError):
    """Raised at start when a production process would run with a development secret."""


class PlatformSettings(BaseSettings):
    """What every process of the platform reads: environment, secrets, NATS, store."""

    # Which secrets this kind of process holds, so production refuses only their defaults:
    # workers sign data source query grants and never hold the JWT secret.
    holds_jwt_secret: ClassVar[bool] = True
    holds_query_key: ClassVar[bool] = False

    model_config = SettingsConfigDict(
        env_prefix="AGENTFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    environment: Environment = "production"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_ttl_minutes: int = Field(default=60 * 24, ge=1, le=60 * 24 * 30)
    jwt_issuer: str = "agentflow"
    # Signs the grants workers query data sources with (shared/security/grants.py); held by
    # workers and the data sources service only.
    datasource_query_key: SecretStr = SecretStr(DEFAULT_QUERY_KEY)

    nats_url: str = Field(
        default="nats://127.0.0.1:4222",
        validation_alias=AliasChoices("AGENTFLOW_NATS_URL", "NATS_URL", "nats_url"),
    )
    nats_connect_timeout_s: float = 2.0
    # How long a duplicate Nats-Msg-Id is remembered: it must outlast a relay crash and restart.
    events_duplicate_window_s: float = Field(default=600.0, gt=0)
    events_max_age_days: float = Field(default=365.0, gt=0)
    events_max_bytes: int = Field(default=-1)
    # Copies of every stream on a NATS cluster (3 in production: a node may be lost). Raising
    # it later applies to existing streams too; it cannot exceed the cluster's size.
    stream_replicas: int = Field(default=1, ge=1, le=5)

    store: StoreKind = "sqlite"
    data_dir: Path = Path(".data")
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: SecretStr = SecretStr("")
    postgres_dbname: str = "agentflow"
    postgres_pool_size: int = Field(default=5, ge=1)
    # Schemas are `<prefix><service>`: several platforms (or test runs) can share one database.
    postgres_schema_prefix: str = Field(default="", pattern=r"^[a-z0-9_]*$", max_length=30)

    # Private networks that workflows may reach anyway (HTTP tools, custom LLM base URLs), as a
    # JSON list: '["10.0.0.0/8", "127.0.0.1/32"]'. Empty: public addresses only (SSRF guard).
    outbound_allow_networks: list[str] = Field(default_factory=list)

    @field_validator("outbound_allow_networks")
    @classmethod
    def _networks_parse(cls, networks: list[str]) -> list[str]:
        OutboundPolicy.from_strings(networks)  # ValueError names the bad entry
        return networks

    def outbound_policy(self) -> OutboundPolicy:
        """The outbound guard's policy for requests to user-supplied URLs."""
        return OutboundPolicy.from_strings(self.outbound_allow_networks)

    @model_validator(mode="after")
    def _refuse_default_secret(self) -> PlatformSettings:
        if self.environment != "production":
            return self
        held = [
            ("AGENTFLOW_JWT_SECRET", self.jwt_secret, DEFAULT_JWT_SECRET, self.holds_jwt_secret),
            (
                "AGENTFLOW_DATASOURCE_QUERY_KEY",
                self.datasource_query_key,
                DEFAULT_QUERY_KEY,
                self.holds_query_key,
            ),
        ]
        for name, secret, default, holds in held:
            if not holds:
                continue
            if secret.get_secret_value() == default:
                raise InsecureSettingsError(
                    f"{name} is the development default; set a secret of your own "
                    "or run with AGENTFLOW_ENVIRONMENT=development"
                )
            if len(secret.get_secret_value()) < 32:
                raise InsecureSettingsError(f"{name} must be at least 32 characters")
        return self


class ServiceSettings(PlatformSettings):
    """A service process: the platform settings plus where it listens and what it stores."""

    # Each subclass names itself; the name picks the SQLite file and the PostgreSQL schema.
    service_name: ClassVar[str] = "service"

    host: str = "127.0.0.1"
    port: int = 8000

    @property
    def postgres_schema(self) -> str:
        return f"{self.postgres_schema_prefix}{self.service_name}"

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this service's store."""
        if self.store == "sqlite":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.data_dir / f"{self.service_name}.sqlite"),
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.postgres_dbname,
            "POSTGRES_HOST": self.postgres_host,
            "POSTGRES_PORT": str(self.postgres_port),
            "POSTGRES_USER": self.postgres_user,
            "POSTGRES_PASSWORD": self.postgres_password.get_secret_value(),
            "POSTGRES_SCHEMA": self.postgres_schema,
            "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_PRE_PING": "y",
            "APPLICATION_RECORDER_TOPIC": "shared.pg_recorder:PipelineSafeRecorder",
        }


def service_port_field(default: int, service: str) -> Any:
    """A `port` field read from `AGENTFLOW_<SERVICE>_PORT` only, so services can share one env
    (and a bare `PORT`, which honcho sets for every process, is ignored)."""
    return Field(default=default, validation_alias=f"AGENTFLOW_{service.upper()}_PORT")
