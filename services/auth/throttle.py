"""Brute-force protection for `POST /api/v1/auth/login`: after `max_per_user` failed logins
for one account, or `max_per_address` from one client address, within `window_s` seconds,
further attempts answer 429 with `Retry-After` — checked before the password is hashed, so
a flood costs no argon2 work. A success clears the account's failures (not the address's).

Counts live in the auth process: with several auth replicas each keeps its own, so the
bound is per replica (documented in docs/security.md)."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from services.auth import messages
from shared.errors import TooManyRequests


class LoginThrottled(TooManyRequests):
    default_code = "LOGIN_THROTTLED"
    default_message = messages.LOGIN_THROTTLED


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
        self._limits = {"user": max_per_user, "address": max_per_address}
        self._window_s = window_s
        self._max_keys = max_keys  # a spray of made-up names cannot grow memory without end
        self._clock = clock
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, login: str, address: str) -> None:
        """Raise `LoginThrottled` if this account or this address is over its limit."""
        now = self._clock()
        with self._lock:
            waits = [
                self._wait(("user", login.casefold()), now),
                self._wait(("address", address), now),
            ]
        wait = max(waits)
        if wait > 0:
            raise LoginThrottled(
                headers={"Retry-After": str(math.ceil(wait))}, seconds=math.ceil(wait)
            )

    def failed(self, login: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key in (("user", login.casefold()), ("address", address)):
                times = self._failures.pop(key, None) or deque()
                times.append(now)
                self._failures[key] = times  # most recently failed last
            while len(self._failures) > self._max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, login: str) -> None:
        with self._lock:
            self._failures.pop(("user", login.casefold()), None)

    def _wait(self, key: tuple[str, str], now: float) -> float:
        """Seconds until `key` may try again (0: now)."""
        times = self._failures.get(key)
        if not times:
            return 0.0
        while times and times[0] <= now - self._window_s:
            times.popleft()
        if len(times) < self._limits[key[0]]:
            return 0.0
        # Allowed again when enough of the oldest failures have left the window.
        return times[len(times) - self._limits[key[0]]] + self._window_s - now
