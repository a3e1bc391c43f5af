"""Password hashing (argon2id) and the strength policy for new passwords."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.auth import messages
from services.auth.settings import AuthSettings
from shared.errors import ServiceUnavailable, ValidationFailed

MIN_LENGTH = 8
MAX_LENGTH = 128
# The most common leaked passwords that would otherwise pass the letters-and-digits rule.
_COMMON = frozenset(
    {
        "password1",
        "password12",
        "passw0rd",
        "qwerty123",
        "abc12345",
        "abcd1234",
        "1q2w3e4r",
        "qwe12345",
        "iloveyou1",
        "admin123",
        "admin1234",
        "welcome1",
        "letmein1",
        "a1234567",
        "1234567a",
        "qwerty12",
        "zxcvbnm1",
        "1qaz2wsx",
    }
)


class WeakPassword(ValidationFailed):
    default_code = "WEAK_PASSWORD"


def check_password_strength(password: str, username: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(messages.PASSWORD_TOO_SHORT, min=MIN_LENGTH)
    if len(password) > MAX_LENGTH:
        raise WeakPassword(messages.PASSWORD_TOO_LONG, max=MAX_LENGTH)
    if not any(c.isalpha() for c in password) or not any(c.isdigit() for c in password):
        raise WeakPassword(messages.PASSWORD_NEEDS_MIX)
    if password.casefold() in _COMMON:
        raise WeakPassword(messages.PASSWORD_TOO_COMMON)
    if len(username) >= 3 and username.casefold() in password.casefold():
        raise WeakPassword(messages.PASSWORD_CONTAINS_NAME)


class HashingBusy(ServiceUnavailable):
    """Every hashing slot stayed taken for the whole wait: the caller may try again soon."""

    default_code = "AUTH_BUSY"
    default_message = messages.AUTH_BUSY


class PasswordHashing:
    """argon2id, at most `max_concurrent_hashes` at once: each takes `argon2_memory_kib`, so a
    burst of registrations or logins queues here instead of exhausting memory."""

    def __init__(self, settings: AuthSettings) -> None:
        self._slots = threading.BoundedSemaphore(settings.max_concurrent_hashes)
        self._wait_s = settings.hash_wait_s
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified against when the user is unknown, so both failures take the same time.
        self._decoy = self._hasher.hash("decoy-password-for-unknown-users-1")

    def hash(self, password: str) -> str:
        with self._slot():
            return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        with self._slot():
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and bool(
                    password_hash
                )
            except (VerificationError, InvalidHashError):
                return False

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if not self._slots.acquire(timeout=self._wait_s):
            raise HashingBusy(headers={"Retry-After": "1"})
        try:
            yield
        finally:
            self._slots.release()

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)
