"""Per-user limits on starting executions, so one user flooding the platform cannot crowd out
the others: at most `max_running_executions_per_user` unfinished runs at once, and at most
`max_executions_per_minute_per_user` started in any 60 seconds. Beyond either: 429 with
`Retry-After`. Counted from the executions read model, which every api replica shares."""

from __future__ import annotations

import threading
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


class ExecutionLimits:
    def __init__(self, settings: ExecutorSettings, executions: ExecutionList) -> None:
        self._running = settings.max_running_executions_per_user
        self._per_minute = settings.max_executions_per_minute_per_user
        self._executions = executions
        # One start at a time per user in this process, so parallel requests of one user
        # cannot all pass the check before any of them is counted.
        self._locks: dict[UUID, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def lock(self, owner_id: UUID) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(owner_id, threading.Lock())

    def check(self, owner_id: UUID) -> None:
        """Raise when the owner may not start another execution now (call under `lock`)."""
        unfinished, recent = self._executions.activity(
            owner_id, datetime.now(UTC) - timedelta(minutes=1)
        )
        if unfinished >= self._running:
            raise TooManyRunning(limit=self._running, headers={"Retry-After": "5"})
        if recent >= self._per_minute:
            raise ExecutionRateLimited(limit=self._per_minute, headers={"Retry-After": "60"})
