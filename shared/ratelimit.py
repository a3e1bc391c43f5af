"""A sliding-window counter per key: at most `limit` events per key in any `window_s` seconds.

The one primitive behind the login and registration throttles (auth) and the data source
test/query limits: `take` checks and counts under one lock, so concurrent callers cannot all
slip under the limit, and memory stays bounded (the least recently used keys are forgotten
beyond `max_keys`). Counts live in the process: with several replicas each keeps its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable


class SlidingWindow:
    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._events: OrderedDict[Hashable, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: Hashable) -> float:
        """Count one event for `key` and return 0, or count nothing and return the seconds
        until one is allowed again."""
        now = self._clock()
        with self._lock:
            times = self._events.pop(key, None) or deque()
            while times and times[0] <= now - self._window_s:
                times.popleft()
            self._events[key] = times  # most recently used last
            if len(times) >= self.limit:
                # Allowed again when enough of the oldest events have left the window.
                return times[len(times) - self.limit] + self._window_s - now
            times.append(now)
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
            return 0.0

    def give_back(self, key: Hashable) -> None:
        """Uncount the latest event of `key` (one that turned out not to count)."""
        with self._lock, contextlib.suppress(KeyError, IndexError):
            self._events[key].pop()

    def clear(self, key: Hashable) -> None:
        with self._lock:
            self._events.pop(key, None)
