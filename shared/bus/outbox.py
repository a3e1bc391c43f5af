"""The outbox relay: stored events reach JetStream only from the store's notification log.

Guarantees (docs/adr/0003-outbox-relay.md):
- nothing is published that was not stored: the relay reads committed notifications only;
- nothing stored stays unpublished: the position is saved only after JetStream acked the
  batch, so a crash anywhere replays from the last saved position;
- nothing is published twice within the duplicate window: each message carries
  `Nats-Msg-Id = <aggregate_id>:<version>`, which JetStream deduplicates;
- order: a batch is written to the connection in notification-log order (acks are awaited
  together), so JetStream stores it in that order; only a batch that failed part-way and is
  re-sent can interleave, so consumers order by the envelope's per-aggregate `version`.
A save wakes the relay at once; polling is only the safety net (e.g. a CLI wrote the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from eventsourcing.persistence import Tracking
from prometheus_client import Counter, Gauge

from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.envelope import EventEnvelope, IntegrationEvent
from shared.bus.streams import event_subject
from shared.eventstore import EventSourcedApplication

T = TypeVar("T")

log = logging.getLogger("agentflow.outbox")

Translator = Callable[[Any], IntegrationEvent | None]

OUTBOX_PUBLISHED = Counter(
    "agentflow_outbox_published_total",
    "Integration events the outbox relay published (duplicates included).",
    ["source", "duplicate"],
)
OUTBOX_LAG = Gauge(
    "agentflow_outbox_lag_events",
    "Events stored but not yet published by the relay (grows while NATS is unreachable).",
    ["source"],
)
OUTBOX_POSITION = Gauge(
    "agentflow_outbox_position",
    "Last notification id of the store that the relay has published.",
    ["source"],
)


class OutboxRelay:
    def __init__(
        self,
        app: EventSourcedApplication,
        bus: JetStreamBus,
        translate: Translator,
        *,
        source: str,
        batch_size: int = 200,
        poll_interval_s: float = 2.0,
        tracking_name: str | None = None,
    ) -> None:
        self._app = app
        self._bus = bus
        self._translate = translate
        self._source = source
        self._tracking_name = tracking_name or f"outbox.{source}"
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Held by every store call run in a thread: a cancelled task does not stop its thread,
        # so `stop` takes this lock to know no call is still using the store the app is about
        # to close (SQLite crashes on a connection closed under a running query).
        self._store_calls = threading.Lock()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._app.add_save_listener(self.wake)
        self._task = asyncio.create_task(self._run(), name=f"outbox-{self._source}")

    async def stop(self) -> None:
        self._app.remove_save_listener(self.wake)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._in_store, lambda: None)

    def wake(self) -> None:
        """Thread-safe: called by the store right after a save commits."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def position(self) -> int:
        return await asyncio.to_thread(self._in_store, self._position)

    def _in_store(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._store_calls:
            return call(*args, **kwargs)

    async def relay_pending(self) -> int:
        """Publish everything stored after the saved position; return how many were read."""
        total = 0
        await asyncio.to_thread(self._in_store, self._measure_lag)
        while True:
            start = await asyncio.to_thread(self._in_store, self._position)
            notifications = await asyncio.to_thread(
                self._in_store,
                self._app.recorder.select_notifications,
                start,
                self._batch_size,
                inclusive_of_start=False,
            )
            if not notifications:
                return total
            outgoing = [m for m in map(self._message_for, notifications) if m is not None]
            if outgoing:
                acks = await self._bus.publish_batch(outgoing)
                duplicates = sum(1 for ack in acks if ack.duplicate)
                OUTBOX_PUBLISHED.labels(self._source, "true").inc(duplicates)
                OUTBOX_PUBLISHED.labels(self._source, "false").inc(len(acks) - duplicates)
            last = notifications[-1].id
            await asyncio.to_thread(
                self._in_store,
                self._app.tracking.insert_tracking,
                Tracking(self._tracking_name, last),
            )
            OUTBOX_POSITION.labels(self._source).set(last)
            await asyncio.to_thread(self._in_store, self._measure_lag, last)
            total += len(notifications)
            if len(notifications) < self._batch_size:
                return total

    def _measure_lag(self, position: int | None = None) -> None:
        stored = self._app.recorder.max_notification_id() or 0
        published = self._position() if position is None else position
        OUTBOX_LAG.labels(self._source).set(max(0, stored - published))

    def _position(self) -> int:
        return self._app.tracking.max_tracking_id(self._tracking_name) or 0

    def _message_for(self, notification: Any) -> OutgoingMessage | None:
        domain_event: Any = self._app.mapper.to_domain_event(notification)
        integration_event = self._translate(domain_event)
        if integration_event is None:
            return None  # internal bookkeeping (e.g. uniqueness index records) is not published
        envelope = EventEnvelope.wrap(
            integration_event,
            source=self._source,
            aggregate_id=str(domain_event.originator_id),
            version=domain_event.originator_version,
            occurred_at=domain_event.timestamp,
        )
        return OutgoingMessage(
            subject=event_subject(envelope.aggregate, envelope.aggregate_id, envelope.type),
            payload=envelope.model_dump_json().encode(),
            msg_id=envelope.msg_id,
            headers={"Agentflow-Event-Type": envelope.type},
        )

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            self._wake.clear()
            try:
                await self.relay_pending()
                backoff = 0.2
            except BusUnavailable as exc:
                log.info("outbox waiting for NATS: %s", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
