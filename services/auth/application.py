"""The auth service's commands and queries. Takes and returns ids and plain data."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from services.auth import messages
from services.auth.domain import (
    EmailIndex,
    RevokedToken,
    User,
    UsernameIndex,
    normalize_email,
)
from services.auth.passwords import PasswordHashing, check_password_strength
from services.auth.settings import AuthSettings
from shared.errors import Conflict, NotFound, Unauthorized
from shared.eventstore import EventSourcedApplication
from shared.security.tokens import Role


class UsernameTaken(Conflict):
    default_code = "USERNAME_TAKEN"
    default_message = messages.USERNAME_TAKEN


class EmailTaken(Conflict):
    default_code = "EMAIL_TAKEN"
    default_message = messages.EMAIL_TAKEN


class InvalidCredentials(Unauthorized):
    default_code = "INVALID_CREDENTIALS"
    default_message = messages.BAD_CREDENTIALS


class AdminAccountMismatch(Conflict):
    default_code = "ADMIN_ACCOUNT_MISMATCH"
    default_message = messages.ADMIN_ACCOUNT_MISMATCH


class UserNotFound(NotFound):
    default_code = "USER_NOT_FOUND"
    default_message = messages.USER_GONE


@dataclass(frozen=True)
class UserView:
    id: uuid.UUID
    username: str
    email: str
    role: Role
    created_at: datetime


class AuthApplication(EventSourcedApplication):
    def __init__(self, settings: AuthSettings, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.passwords = PasswordHashing(settings)

    # -- commands ----------------------------------------------------------------------------

    def register(self, username: str, email: str, password: str, role: Role = "user") -> UserView:
        username = username.strip()
        email = normalize_email(email)
        check_password_strength(password, username)
        # Friendly early answers; the store's uniqueness below is what actually guarantees it.
        self._check_unclaimed(username, email)
        user = User(username, email, self.passwords.hash(password), role)
        claims = (UsernameIndex(username, user.id), EmailIndex(email, user.id))
        try:
            self.save(user, *claims)
        except IntegrityError:
            # A concurrent registration claimed the name or address between check and save.
            self._check_unclaimed(username, email)
            raise Conflict from None
        return self._view(user)

    def ensure_admin(
        self, username: str, email: str, password: str, *, promote: bool = False
    ) -> UserView:
        """Create an admin, or make the existing user of that name one: only if its email and
        password are the ones given, or `promote` says so explicitly. Registration is open, so
        whoever registered the name first must not become admin by that alone."""

        def promote_or_create() -> UserView:
            user = self._user_by_username(username)
            if user is None:
                return self.register(username, email, password, role="admin")
            if user.role == "admin":
                return self._view(user)  # nothing to grant
            if not promote and (
                user.email != normalize_email(email)
                or not self.passwords.verify(user.password_hash, password)
            ):
                raise AdminAccountMismatch
            user.change_role("admin")
            self.save(user)
            return self._view(user)

        return self.retry_on_conflict(promote_or_create)

    def set_role(self, username: str, role: Role) -> UserView:
        """Make an existing user an admin or a user; every service applies it to the tokens
        that user already holds (shared/security/revocations.py)."""

        def change() -> UserView:
            user = self._user_by_username(username)
            if user is None:
                raise UserNotFound
            user.change_role(role)
            self.save(user)
            return self._view(user)

        return self.retry_on_conflict(change)

    def revoke_token(self, token_id: str, user_id: uuid.UUID, expires_at: float) -> None:
        """End one token before it expires (logout). Revoking it again changes nothing."""
        # Already revoked: the store holds one record per token id.
        with contextlib.suppress(IntegrityError):
            self.save(RevokedToken(token_id, user_id, expires_at))

    # -- queries -----------------------------------------------------------------------------

    def authenticate(self, login: str, password: str) -> UserView:
        """The user whose username (or email) and password match; the same error otherwise."""
        user = self._user_by_email(login) if "@" in login else self._user_by_username(login)
        if not self.passwords.verify(user.password_hash if user else None, password):
            raise InvalidCredentials
        assert user is not None
        return self._view(user)

    def account_key(self, login: str) -> str:
        """What failed logins are counted by: the account a username or email names, so
        trying both does not double an attacker's guesses; else the login as typed."""
        user = self._user_by_email(login) if "@" in login else self._user_by_username(login)
        return str(user.id) if user is not None else login.casefold()

    def get_user(self, user_id: uuid.UUID) -> UserView:
        try:
            user: object = self.repository.get(user_id)
        except AggregateNotFoundError:
            raise UserNotFound from None
        if not isinstance(user, User):
            raise UserNotFound
        return self._view(user)

    # -- helpers -----------------------------------------------------------------------------

    def _check_unclaimed(self, username: str, email: str) -> None:
        if UsernameIndex.create_id(username) in self.repository:
            raise UsernameTaken
        if EmailIndex.create_id(email) in self.repository:
            raise EmailTaken

    def _user_by_username(self, username: str) -> User | None:
        return self._user_via(UsernameIndex.create_id(username))

    def _user_by_email(self, email: str) -> User | None:
        return self._user_via(EmailIndex.create_id(email))

    def _user_via(self, index_id: uuid.UUID) -> User | None:
        try:
            index: UsernameIndex | EmailIndex = self.repository.get(index_id)
            user: object = self.repository.get(index.user_id)
        except AggregateNotFoundError:
            return None
        return user if isinstance(user, User) else None

    @staticmethod
    def _view(user: User) -> UserView:
        return UserView(
            id=user.id,
            username=user.username,
            email=user.email,
            role=user.role,
            created_at=user.created_on,
        )
