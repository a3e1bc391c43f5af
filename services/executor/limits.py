"""Per-user limits on starting executions, so one user flooding the platform cannot crowd out
the others: at most `max_running_executions_per_user` unfinished runs at once, and at most
`max_executions_per_minute_per_user` started in any 60 seconds. Beyond either: 429 with
`Retry-After`. Counted from the executions read model, which every api replica shares.

Reading the read model on every start cost more than the rest of the start (a catch-up and two
counts): each owner's figures are read at most once a second, and the starts made here since
are added to them. That only over-counts (runs that finished since still count), so a start
that would be refused is checked again on fresh figures first: nobody is refused wrongly. With
several api replicas, what the others started within that second is seen a second late."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID

from services.executor import messages
from services.executor.readmodel import ExecutionList
from services.executor.settings import ExecutorSettings
from shared.errors import TooManyRequests


class TooManyRunning(TooManyRequests):
    default_code = "TOO_MANY_RUNNING_EXECUTIONS"
    default_message = messages.TOO_MANY_RUNNING


class ExecutionRateLimited(TooManyRequests):
    default_code = "EXECUTION_RATE_LIMITED"
    default_message = messages.RATE_LIMITED


@dataclass
class _Figures:
    unfinished: int
    recent: int
    read_at: float  # monotonic seconds
    started_since: int = 0  # starts made here after the figures were read


class ExecutionLimits:
    def __init__(
        self,
        settings: ExecutorSettings,
        executions: ExecutionList,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._running = settings.max_running_executions_per_user
        self._per_minute = settings.max_executions_per_minute_per_user
        self._executions = executions
        self._refresh_s = refresh_s
        self._clock = clock
        self._figures: dict[UUID, _Figures] = {}
        # One start at a time per user in this process, so parallel requests of one user
        # cannot all pass the check before any of them is counted.
        self._locks: dict[UUID, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def lock(self, owner_id: UUID) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(owner_id, threading.Lock())

    def check(self, owner_id: UUID) -> None:
        """Raise when the owner may not start another execution now (call under `lock`);
        a start that passes is counted (`check` is called right before the start)."""
        figures = self._figures.get(owner_id)
        now = self._clock()
        if figures is None or now - figures.read_at >= self._refresh_s or self._over(figures):
            figures = self._read(owner_id, now)
        self._refuse_if_over(figures)
        figures.started_since += 1

    def forget(self, owner_id: UUID) -> None:
        """The start counted by `check` did not happen (it failed to save)."""
        figures = self._figures.get(owner_id)
        if figures is not None and figures.started_since > 0:
            figures.started_since -= 1

    def _over(self, figures: _Figures) -> bool:
        return (
            figures.unfinished + figures.started_since >= self._running
            or figures.recent + figures.started_since >= self._per_minute
        )

    def _read(self, owner_id: UUID, now: float) -> _Figures:
        unfinished, recent = self._executions.activity(
            owner_id, datetime.now(UTC) - timedelta(minutes=1)
        )
        figures = _Figures(unfinished, recent, now)
        if len(self._figures) > 10_000:  # owners not seen for a while go
            self._figures = {k: v for k, v in self._figures.items() if now - v.read_at < 60}
        self._figures[owner_id] = figures
        return figures

    def _refuse_if_over(self, figures: _Figures) -> None:
        unfinished = figures.unfinished + figures.started_since
        recent = figures.recent + figures.started_since
        if unfinished >= self._running:
            raise TooManyRunning(limit=self._running, headers={"Retry-After": "5"})
        if recent >= self._per_minute:
            raise ExecutionRateLimited(limit=self._per_minute, headers={"Retry-After": "60"})
