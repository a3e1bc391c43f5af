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
    # An existing account of that name becomes admin only if its email and password match the
    # ones above, unless this is set: otherwise whoever registered the name first would be.
    bootstrap_admin_promote: bool = False

    # Brute force (services/auth/throttle.py): failed logins allowed per account and per
    # client address within the window before further attempts answer 429.
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_s: float = Field(default=900.0, gt=0)
    # Registrations allowed per client address within the window (each costs an argon2 hash).
    register_max_per_address: int = Field(default=20, ge=1)
    register_window_s: float = Field(default=3600.0, gt=0)
    # argon2 hashes running at once (each takes argon2_memory_kib); a request that waits longer
    # than hash_wait_s for a slot answers 503 AUTH_BUSY with Retry-After.
    max_concurrent_hashes: int = Field(default=4, ge=1, le=256)
    hash_wait_s: float = Field(default=10.0, gt=0, le=300)
    # Proxies in front of the gateway that append to X-Forwarded-For (an ingress: 1). The
    # client address is the entry that many places before the last (the gateway's own).
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
