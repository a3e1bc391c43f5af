"""Per-user limits of the data sources service, so that one user cannot use it to hammer a
database (guessing passwords, scanning ports) or crowd out the others:

- `/test` and `/query`: at most `max_data_source_tests_per_minute_per_user` and
  `max_data_source_queries_per_minute_per_user` in any 60 seconds; beyond, 429
  `DATA_SOURCE_RATE_LIMITED` with `Retry-After`. A request is counted when it is admitted,
  before any connection is tried, so parallel requests cannot all slip under the limit.
  Workflows' queries run as their owner and count too.
- registrations: at most `max_data_sources_per_user` live data sources; beyond, 429
  `QUOTA_EXCEEDED` (no `Retry-After`: deleting a source frees a place).

Rate counts live in the process: with several replicas each keeps its own (as the login
throttle). The quota is counted from the read model, caught up first, one registration per
user at a time in a process.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from services.datasources import messages
from services.datasources.settings import DataSourcesSettings
from shared.errors import QuotaExceeded, TooManyRequests
from shared.i18n import Message

WINDOW_S = 60.0


class DataSourceRateLimited(TooManyRequests):
    default_code = "DATA_SOURCE_RATE_LIMITED"
    default_message = messages.QUERIES_RATE_LIMITED


class DataSourceQuotaExceeded(QuotaExceeded):
    default_message = messages.QUOTA_EXCEEDED


class SlidingWindow:
    """At most `limit` events per key in any `window_s` seconds (the oldest keys are forgotten
    beyond `max_keys`, so memory stays bounded)."""

    def __init__(
        self,
        limit: int,
        window_s: float = WINDOW_S,
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
        """Count one event for `key` and return 0, or count nothing and return the seconds to
        wait until one is allowed again."""
        now = self._clock()
        with self._lock:
            times = self._events.pop(key, None) or deque()
            while times and times[0] <= now - self._window_s:
                times.popleft()
            if len(times) >= self.limit:
                self._events[key] = times
                return times[len(times) - self.limit] + self._window_s - now
            times.append(now)
            self._events[key] = times  # most recently used last
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
            return 0.0


class DataSourceLimits:
    def __init__(
        self, settings: DataSourcesSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sources = settings.max_data_sources_per_user
        self._tests = SlidingWindow(settings.max_data_source_tests_per_minute_per_user, clock=clock)
        self._queries = SlidingWindow(
            settings.max_data_source_queries_per_minute_per_user, clock=clock
        )
        self._creating: dict[UUID, threading.Lock] = {}
        self._creating_lock = threading.Lock()

    def count_test(self, user_id: UUID) -> None:
        _take(self._tests, user_id, messages.TESTS_RATE_LIMITED)

    def count_query(self, user_id: UUID) -> None:
        _take(self._queries, user_id, messages.QUERIES_RATE_LIMITED)

    @contextmanager
    def registering(self, user_id: UUID, owned: Callable[[], int]) -> Iterator[None]:
        """Hold the user's registration lock while the new source is saved; raises
        `DataSourceQuotaExceeded` first if `owned()` already reaches the quota."""
        with self._creating_lock:
            lock = self._creating.setdefault(user_id, threading.Lock())
        with lock:
            if owned() >= self.max_sources:
                raise DataSourceQuotaExceeded(limit=self.max_sources)
            yield


def _take(window: SlidingWindow, user_id: UUID, message: Message) -> None:
    wait = window.take(user_id)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise DataSourceRateLimited(
            message, headers={"Retry-After": str(seconds)}, limit=window.limit, seconds=seconds
        )


def _limits(request: Request) -> DataSourceLimits:
    limits = request.app.state.data_source_limits
    assert isinstance(limits, DataSourceLimits)
    return limits


Limits = Annotated[DataSourceLimits, Depends(_limits)]
