"""Which auth domain events are published, and as what. Password hashes never leave the store."""

from __future__ import annotations

from typing import Any

from shared.bus.envelope import IntegrationEvent


def to_integration_event(domain_event: Any) -> IntegrationEvent | None:
    kind = type(domain_event).__qualname__
    user_id = str(domain_event.originator_id)  # for User events
    if kind == "User.Registered":
        return IntegrationEvent(
            type="UserRegistered",
            aggregate="user",
            data={
                "user_id": user_id,
                "username": domain_event.username,
                "email": domain_event.email,
                "role": domain_event.role,
            },
        )
    if kind == "User.PasswordChanged":
        return IntegrationEvent(
            type="UserPasswordChanged", aggregate="user", data={"user_id": user_id}
        )
    if kind == "User.RoleChanged":
        return IntegrationEvent(
            type="UserRoleChanged",
            aggregate="user",
            data={"user_id": user_id, "role": domain_event.role},
        )
    if kind == "RevokedToken.Revoked":
        # Every service keeps a denylist of these until the token expires
        # (shared/security/revocations.py); a token id alone grants nothing.
        return IntegrationEvent(
            type="TokenRevoked",
            aggregate="token",
            data={
                "token_id": domain_event.token_id,
                "user_id": str(domain_event.user_id),
                "expires_at": domain_event.expires_at,
            },
        )
    return None  # UsernameIndex / EmailIndex claims are internal bookkeeping
