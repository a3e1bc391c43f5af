"""The auth aggregates. Usernames and emails are unique because their index records' ids are
derived from the normalized key (uuid5), so the event store itself rejects a second claim."""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate, event

from shared.security.tokens import ROLES, Role

_USERNAME_NS = uuid.UUID("0b6f3f0c-0d3e-4f7c-9f53-9a4a1f6e2c01")
_EMAIL_NS = uuid.UUID("a7d0c2f4-6a1b-4c55-8c9e-5b0e3d2f7a02")
_TOKEN_NS = uuid.UUID("3c9e1a52-7d4b-4f08-b1e6-0a2d5c8f9e13")


def normalize_username(username: str) -> str:
    return username.strip().casefold()


def normalize_email(email: str) -> str:
    return email.strip().lower()


class InvalidRole(ValueError):
    pass


def check_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidRole(role)
    return role


class User(Aggregate):
    @event("Registered")
    def __init__(self, username: str, email: str, password_hash: str, role: Role) -> None:
        self.username = username
        self.email = email
        self.password_hash = password_hash
        self.role: Role = check_role(role)

    @event("PasswordChanged")
    def change_password(self, password_hash: str) -> None:
        self.password_hash = password_hash

    def change_role(self, role: Role) -> None:
        if check_role(role) != self.role:
            self._role_changed(role)

    @event("RoleChanged")
    def _role_changed(self, role: Role) -> None:
        self.role = role


class UsernameIndex(Aggregate):
    """Claims a username for one user; its id is derived from the normalized username."""

    @staticmethod
    def create_id(username: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(_USERNAME_NS, normalize_username(username))

    @event("Claimed")
    def __init__(self, username: str, user_id: uuid.UUID) -> None:
        self.username = username
        self.user_id = user_id


class EmailIndex(Aggregate):
    """Claims an email address for one user; its id is derived from the normalized address."""

    @staticmethod
    def create_id(email: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(_EMAIL_NS, normalize_email(email))

    @event("Claimed")
    def __init__(self, email: str, user_id: uuid.UUID) -> None:
        self.email = email
        self.user_id = user_id


class RevokedToken(Aggregate):
    """A token ended by logout before it expired. Its id is derived from the token's `jti`,
    so a second logout with the same token is the store's duplicate, not a second event."""

    @staticmethod
    def create_id(token_id: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(_TOKEN_NS, token_id)

    @event("Revoked")
    def __init__(self, token_id: str, user_id: uuid.UUID, expires_at: float) -> None:
        self.token_id = token_id
        self.user_id = user_id
        self.expires_at = expires_at
