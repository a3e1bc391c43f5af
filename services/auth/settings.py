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

    # Brute force (services/auth/throttle.py): failed logins allowed per account and per
    # client address within the window before further attempts answer 429.
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_s: float = Field(default=900.0, gt=0)
    # Proxies in front of the gateway that append to X-Forwarded-For (an ingress: 1). The
    # client address is the entry that many places before the last (the gateway's own).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
