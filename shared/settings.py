"""Settings shared by every service; each service extends `ServiceSettings`.

Every variable carries the `AGENTFLOW_` prefix (e.g. `AGENTFLOW_JWT_SECRET`). `NATS_URL` is also
read without the prefix because it is the name the NATS ecosystem uses.

Values come from the environment, then from a dotenv file: `.env` in the working directory, or
the file `AGENTFLOW_ENV_FILE` names (empty: none, which is what the tests' processes use, so a
developer's `.env` never changes a test). Environment variables win over the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from shared.net.outbound import OutboundPolicy

DEFAULT_JWT_SECRET = "dev-only-insecure-jwt-secret-change-me"  # noqa: S105 - the refused default
DEFAULT_QUERY_KEY = "dev-only-insecure-datasource-query-key"

Environment = Literal["development", "test", "production"]
StoreKind = Literal["sqlite", "postgres"]

ENV_FILE_VARIABLE = "AGENTFLOW_ENV_FILE"
KEY_EXAMPLE = (
    "<32+ random characters: python -c 'import secrets; print(secrets.token_urlsafe(48))'>"
)


class InsecureSettingsError(ValueError):
    """Raised at start when a production process would run with a development secret; names
    the variable, what is wrong with it and an example of a value that would do."""

    def __init__(self, variable: str, why: str, example: str = KEY_EXAMPLE) -> None:
        super().__init__(f"{variable}: {why}")
        self.variable = variable
        self.why = why
        self.example = example


class EnvFileMissing(SettingsError):
    """`AGENTFLOW_ENV_FILE` names a file that is not there (a typo would otherwise silently
    start the process on defaults)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{ENV_FILE_VARIABLE} names {path}, which does not exist")
        self.variable = ENV_FILE_VARIABLE
        self.value = path


def _listed(value: Any, *, split_on_spaces: bool = False) -> Any:
    """A list setting as people write it: JSON (`["a", "b"]`), comma-separated (`a, b`), or
    JSON-like without quotes (`[a, b]`); a list given in code passes through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            if not text.endswith("]"):
                raise ValueError("starts like a JSON list but is not one") from None
            text = text[1:-1]
    parts = text.replace(",", " ").split() if split_on_spaces else text.split(",")
    return [part.strip().strip("'\"") for part in parts if part.strip().strip("'\"")]


# A list read from one variable: JSON or comma-separated (NoDecode: pydantic-settings would
# otherwise insist on JSON and stop the process on anything else).
StrList = Annotated[list[str], NoDecode, BeforeValidator(_listed)]
# Networks have no spaces in them, so spaces separate them too ("10.0.0.0/8 192.168.0.0/16").
NetworkList = Annotated[
    list[str], NoDecode, BeforeValidator(lambda value: _listed(value, split_on_spaces=True))
]


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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        chosen = os.environ.get(ENV_FILE_VARIABLE)
        if chosen is not None:  # set: that file, or (empty) none at all
            if chosen and not Path(chosen).is_file():
                raise EnvFileMissing(chosen)
            dotenv_settings = DotEnvSettingsSource(settings_cls, env_file=chosen or None)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    environment: Environment = "production"
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    # One line per request answered (and per WebSocket opened and closed). Off: every line
    # costs formatting, writing and relaying; 5xx answers are logged either way.
    access_log: bool = False

    jwt_secret: SecretStr = Field(default=SecretStr(DEFAULT_JWT_SECRET), examples=[KEY_EXAMPLE])
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_ttl_minutes: int = Field(default=60 * 24, ge=1, le=60 * 24 * 30)
    jwt_issuer: str = "agentflow"
    # Signs the grants workers query data sources with (shared/security/grants.py); held by
    # workers and the data sources service only.
    datasource_query_key: SecretStr = Field(
        default=SecretStr(DEFAULT_QUERY_KEY), examples=[KEY_EXAMPLE]
    )

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

    # Private networks that workflows may reach anyway (HTTP tools, custom LLM base URLs):
    # "10.0.0.0/8,127.0.0.1/32" or a JSON list. Empty: public addresses only (SSRF guard).
    outbound_allow_networks: NetworkList = Field(
        default_factory=list, examples=["10.0.0.0/8,127.0.0.1/32"]
    )

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
                    name,
                    "it is the development default, refused in production; set a secret of your "
                    "own, or run with AGENTFLOW_ENVIRONMENT=development (.env.example)",
                )
            if len(secret.get_secret_value()) < 32:
                raise InsecureSettingsError(name, "it must be at least 32 characters")
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
    (and a bare `PORT`, which process managers such as honcho set for each process, is ignored)."""
    return Field(default=default, validation_alias=f"AGENTFLOW_{service.upper()}_PORT")
