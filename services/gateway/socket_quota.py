"""How many live-update sockets each user holds open on this gateway process.

A socket costs two NATS subscriptions and a polling task for as long as it stays open, so one
user may not open them without bound. The count is per process: with several gateway
replicas a user may hold up to the limit on each."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from services.gateway import messages
from shared.errors import QuotaExceeded


class TooManySockets(QuotaExceeded):
    default_message = messages.TOO_MANY_SOCKETS


class SocketQuota:
    """Only the gateway's event loop calls it, between awaits: no lock is needed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[UUID] = Counter()

    def open_for(self, user_id: UUID) -> int:
        return self._open[user_id]

    def acquire(self, user_id: UUID) -> None:
        """Count one more socket of `user_id`; 429 (TooManySockets) when they hold the limit.
        Every successful acquire is matched by one `release`, when the socket ends."""
        if self._open[user_id] >= self.limit:
            raise TooManySockets(limit=self.limit)
        self._open[user_id] += 1

    def release(self, user_id: UUID) -> None:
        self._open[user_id] -= 1
        if self._open[user_id] <= 0:
            del self._open[user_id]
