"""What the user records say about tokens already issued, kept in every process that verifies
tokens: tokens revoked by logout (a `jti` denylist kept until each token would have expired)
and roles changed since (a demoted admin's token is a user's from that moment on).

Auth publishes both as integration events (`TokenRevoked`, `UserRoleChanged`) through its
outbox. Each process follows them with an ordered JetStream consumer that starts one token
lifetime back, so after a restart it knows every revocation and role change that can still
matter: an older token has expired anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared.bus.client import JetStreamBus
from shared.bus.streams import EVENTS_STREAM

log = logging.getLogger("agentflow.security.revocations")

ROLE_CHANGED_SUBJECT = "events.user.*.UserRoleChanged"
TOKEN_REVOKED_SUBJECT = "events.token.*.TokenRevoked"  # noqa: S105 - a subject, not a secret
_ROLES = ("user", "admin")


class TokenRevocations:
    """Revoked token ids until their expiry, and the latest role of users whose role changed.

    Thread-safe: sync routes verify tokens in the threadpool while the feed writes on the loop.
    Memory is bounded by the tokens revoked within one token lifetime; expired entries go.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._revoked: dict[str, float] = {}  # jti -> when the token expires (epoch seconds)
        self._roles: dict[str, str] = {}  # user id -> role now
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def revoke(self, token_id: str, expires_at: float) -> None:
        if expires_at <= self._clock():
            return  # expired: verification refuses it anyway
        with self._lock:
            self._revoked[token_id] = expires_at
            self._prune()

    def role_changed(self, user_id: str, role: str) -> None:
        if role in _ROLES:
            with self._lock:
                self._roles[user_id] = role

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def role_of(self, user_id: str, claimed: str) -> str:
        """The user's role now: the last change seen, else what the token says."""
        return self._roles.get(user_id, claimed)

    def __len__(self) -> int:
        return len(self._revoked)

    def _prune(self) -> None:
        now = self._clock()
        if now < self._next_prune:
            return
        self._next_prune = now + 60
        for token_id in [t for t, exp in self._revoked.items() if exp <= now]:
            del self._revoked[token_id]

    # -- the bus -----------------------------------------------------------------------------

    def apply(self, subject: str, payload: bytes) -> None:
        """One integration event from `EVENTS`; anything unreadable is skipped."""
        try:
            envelope = json.loads(payload)
            data: dict[str, Any] = envelope["data"]
            if subject.endswith(".TokenRevoked"):
                self.revoke(str(data["token_id"]), float(data["expires_at"]))
            elif subject.endswith(".UserRoleChanged"):
                self.role_changed(str(data["user_id"]), str(data["role"]))
        except (ValueError, KeyError, TypeError):
            log.warning("skipped an unreadable %s message", subject)


class RevocationFeed:
    """Keeps a `TokenRevocations` current from the bus, re-subscribing after every reconnect
    (from one token lifetime back: applying an event twice changes nothing)."""

    def __init__(
        self, bus: JetStreamBus, revocations: TokenRevocations, lookback: timedelta
    ) -> None:
        self._revocations = revocations
        self._lookback = lookback
        self._subscriptions: list[Subscription] = []
        bus.on_connected(self._subscribe)

    async def _subscribe(self, js: JetStreamContext) -> None:
        await self.close()
        since = datetime.now(UTC) - self._lookback
        for subject in (ROLE_CHANGED_SUBJECT, TOKEN_REVOKED_SUBJECT):
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since
            )
            self._subscriptions.append(
                await js.subscribe(
                    subject,
                    stream=EVENTS_STREAM,
                    cb=self._on_message,
                    ordered_consumer=True,
                    config=config,
                )
            )

    async def _on_message(self, msg: Msg) -> None:
        self._revocations.apply(msg.subject, msg.data)

    async def close(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            with contextlib.suppress(Exception):  # the old connection may be gone already
                await asyncio.wait_for(subscription.unsubscribe(), timeout=2)
