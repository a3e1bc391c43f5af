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

import contextlib
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.auth import messages
from shared.errors import TooManyRequests


class LoginThrottled(TooManyRequests):
    default_code = "LOGIN_THROTTLED"
    default_message = messages.LOGIN_THROTTLED


class RegistrationThrottled(TooManyRequests):
    default_code = "REGISTRATION_THROTTLED"
    default_message = messages.REGISTRATION_THROTTLED


Key = tuple[str, str]  # (kind, value): ("user", account) or ("address", ip)


@dataclass(frozen=True)
class Reservation:
    """One attempt counted ahead of its outcome: its keys and the moment it was counted."""

    keys: tuple[Key, ...]
    at: float


class SlidingWindowLimiter:
    """Attempts per key within a sliding window; at most `limits[kind]` per key of each kind.

    `reserve` checks every key and counts the attempt under one lock, so concurrent callers
    cannot all slip under the limit. Memory is bounded by `max_keys` (oldest keys go first)."""

    def __init__(
        self,
        limits: Mapping[str, int],
        *,
        window_s: float,
        error: type[TooManyRequests],
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = dict(limits)
        self._window_s = window_s
        self._error = error
        self._max_keys = max_keys  # a spray of made-up names cannot grow memory without end
        self._clock = clock
        self._attempts: OrderedDict[Key, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def reserve(self, keys: Mapping[str, str]) -> Reservation:
        """Count one attempt for every key, or raise `error` (counting nothing) if any key is
        already at its limit."""
        now = self._clock()
        wanted = tuple((kind, value) for kind, value in keys.items())
        with self._lock:
            wait = max(self._wait(key, now) for key in wanted)
            if wait <= 0:
                for key in wanted:
                    times = self._attempts.pop(key, None) or deque()
                    times.append(now)
                    self._attempts[key] = times  # most recently used last
                while len(self._attempts) > self._max_keys:
                    self._attempts.popitem(last=False)
        if wait > 0:
            seconds = math.ceil(wait)
            raise self._error(headers={"Retry-After": str(seconds)}, seconds=seconds)
        return Reservation(wanted, now)

    def release(self, reservation: Reservation, kind: str) -> None:
        """Take back what `reservation` counted for keys of `kind`."""
        with self._lock:
            for key in reservation.keys:
                times = self._attempts.get(key)
                if key[0] == kind and times is not None:
                    # Gone already if it left the window or its key was evicted.
                    with contextlib.suppress(ValueError):
                        times.remove(reservation.at)

    def clear(self, kind: str, value: str) -> None:
        with self._lock:
            self._attempts.pop((kind, value), None)

    def _wait(self, key: Key, now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        times = self._attempts.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self._window_s:
            times.popleft()
        limit = self._limits[key[0]]
        if len(times) < limit:
            return 0.0
        # Allowed again when enough of the oldest attempts have left the window.
        return times[len(times) - limit] + self._window_s - now


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
        self._limiter = SlidingWindowLimiter(
            {"user": max_per_user, "address": max_per_address},
            window_s=window_s,
            error=LoginThrottled,
            max_keys=max_keys,
            clock=clock,
        )

    def attempt(self, login: str, address: str) -> Reservation:
        """Raise `LoginThrottled` if this account or address is over its limit; otherwise
        count this attempt as a failure until `succeeded` says otherwise."""
        return self._limiter.reserve({"user": login.casefold(), "address": address})

    def succeeded(self, attempt: Reservation) -> None:
        self._limiter.release(attempt, "address")
        for kind, value in attempt.keys:
            if kind == "user":
                self._limiter.clear(kind, value)


class RegistrationThrottle:
    def __init__(
        self,
        *,
        max_per_address: int,
        window_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limiter = SlidingWindowLimiter(
            {"address": max_per_address},
            window_s=window_s,
            error=RegistrationThrottled,
            max_keys=max_keys,
            clock=clock,
        )

    def attempt(self, address: str) -> None:
        """Count one registration from `address`, or raise `RegistrationThrottled`."""
        self._limiter.reserve({"address": address})
