"""Data sources service settings."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, model_validator

from shared.settings import InsecureSettingsError, ServiceSettings, service_port_field

FERNET_EXAMPLE = (
    "<python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'>"
)


class DataSourcesSettings(ServiceSettings):
    service_name: ClassVar[str] = "datasources"
    holds_query_key: ClassVar[bool] = True  # verifies the workers' query grants

    port: int = service_port_field(8104, "datasources")
    projection_poll_s: float = Field(default=2.0, gt=0)

    # Fernet keys, comma-separated; the first encrypts, every one decrypts. Rotation: put a new
    # key first, restart, run `agentflow-datasources rotate-secrets`, then drop the old key.
    # Unset in development: a key is made once and kept in <data_dir>/datasources-secret.key.
    secrets_keys: SecretStr = Field(default=SecretStr(""), examples=[FERNET_EXAMPLE])
    json_dir: Path | None = Field(
        default=None,
        description="Where json sources' files live, one directory per user "
        "(<json_dir>/<user id>/); default <data_dir>/json.",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    statement_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_rows: int = Field(default=1000, ge=1, le=100_000)
    pool_max_size: int = Field(default=5, ge=1, le=100)
    # Per user (see services/datasources/limits.py): beyond, 429.
    max_data_sources_per_user: int = Field(default=100, ge=1, le=1_000_000)
    max_data_source_tests_per_minute_per_user: int = Field(default=60, ge=1, le=1_000_000)
    max_data_source_queries_per_minute_per_user: int = Field(default=600, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> DataSourcesSettings:
        if self.environment == "production" and not self.secrets_keys.get_secret_value():
            raise InsecureSettingsError(
                "AGENTFLOW_SECRETS_KEYS",
                "it must hold a Fernet key in production (or run with "
                "AGENTFLOW_ENVIRONMENT=development, .env.example)",
                FERNET_EXAMPLE,
            )
        return self

    def fernet_keys(self) -> list[str]:
        configured = [k.strip() for k in self.secrets_keys.get_secret_value().split(",")]
        keys = [k for k in configured if k]
        if keys:
            return keys
        path = self.data_dir / "datasources-secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(Fernet.generate_key())
            path.chmod(0o600)
        return [path.read_text().strip()]

    @property
    def json_directory(self) -> Path:
        return self.json_dir if self.json_dir is not None else self.data_dir / "json"
