"""Auth service settings: the platform's, plus password hashing and the bootstrap admin."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from shared.settings import ServiceSettings, service_port_field


class AuthSettings(ServiceSettings):
    service_name: ClassVar[str] = "auth"

    port: int = service_port_field(8101, "auth")

    # argon2id cost; the defaults follow RFC 9106's second recommended option.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=64 * 1024, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)

    # An admin created (or promoted) at start when all three are set.
    bootstrap_admin_username: str | None = None
    bootstrap_admin_email: str | None = None
    bootstrap_admin_password: SecretStr | None = None
