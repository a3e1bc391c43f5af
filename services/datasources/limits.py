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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request

from services.datasources import messages
from services.datasources.settings import DataSourcesSettings
from shared.errors import QuotaExceeded, TooManyRequests
from shared.i18n import Message
from shared.ratelimit import SlidingWindow

WINDOW_S = 60.0


class DataSourceRateLimited(TooManyRequests):
    default_code = "DATA_SOURCE_RATE_LIMITED"
    default_message = messages.QUERIES_RATE_LIMITED


class DataSourceQuotaExceeded(QuotaExceeded):
    default_message = messages.QUOTA_EXCEEDED


class DataSourceLimits:
    def __init__(
        self, settings: DataSourcesSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_sources = settings.max_data_sources_per_user
        self._tests = SlidingWindow(
            settings.max_data_source_tests_per_minute_per_user, WINDOW_S, clock=clock
        )
        self._queries = SlidingWindow(
            settings.max_data_source_queries_per_minute_per_user, WINDOW_S, clock=clock
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
