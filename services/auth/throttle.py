"""Brute-force and flood protection for the two public auth routes, checked before any
password is hashed, so a flood costs no argon2 work.

- Login: after `max_per_user` failed logins for one account, or `max_per_address` from one
  client address, within `window_s` seconds, further attempts answer 429 with `Retry-After`.
  An attempt is counted as a failure *before* its password is hashed (a reservation) and
  taken back if it succeeds, so 40 guesses sent at once cannot all pass the check before any
  of them is counted. A success also clears the account's failures (not the address's).
- Registration: at most `max_per_address` registrations per client address per window,
  successful or not.

Counts live in the auth process: with several auth replicas each keeps its own, so the
bound is per replica (documented in docs/security.md)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.auth import messages
from shared.errors import TooManyRequests
from shared.ratelimit import SlidingWindow


class LoginThrottled(TooManyRequests):
    default_code = "LOGIN_THROTTLED"
    default_message = messages.LOGIN_THROTTLED


class RegistrationThrottled(TooManyRequests):
    default_code = "REGISTRATION_THROTTLED"
    default_message = messages.REGISTRATION_THROTTLED


@dataclass(frozen=True)
class LoginAttempt:
    """One login counted ahead of its outcome."""

    account: str
    address: str


def _refuse(error: type[TooManyRequests], wait: float) -> TooManyRequests:
    seconds = max(1, math.ceil(wait))
    return error(headers={"Retry-After": str(seconds)}, seconds=seconds)


class LoginThrottle:
    def __init__(
        self,
        *,
        max_per_user: int,
        max_per_address: int,
        window_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._accounts = SlidingWindow(max_per_user, window_s, max_keys=max_keys, clock=clock)
        self._addresses = SlidingWindow(max_per_address, window_s, max_keys=max_keys, clock=clock)

    def attempt(self, login: str, address: str) -> LoginAttempt:
        """Raise `LoginThrottled` if this account or address is over its limit; otherwise
        count this attempt as a failure until `succeeded` says otherwise."""
        attempt = LoginAttempt(login.casefold(), address)
        wait = self._accounts.take(attempt.account)
        if wait > 0:
            raise _refuse(LoginThrottled, wait)
        wait = self._addresses.take(address)
        if wait > 0:
            self._accounts.give_back(attempt.account)  # refused: counts nowhere
            raise _refuse(LoginThrottled, wait)
        return attempt

    def succeeded(self, attempt: LoginAttempt) -> None:
        self._addresses.give_back(attempt.address)
        self._accounts.clear(attempt.account)


class RegistrationThrottle:
    def __init__(
        self,
        *,
        max_per_address: int,
        window_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._addresses = SlidingWindow(max_per_address, window_s, max_keys=max_keys, clock=clock)

    def attempt(self, address: str) -> None:
        """Count one registration from `address`, or raise `RegistrationThrottled`."""
        wait = self._addresses.take(address)
        if wait > 0:
            raise _refuse(RegistrationThrottled, wait)
