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
The position is kept in memory and saved at most once a second under load (`relay_pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from eventsourcing.persistence import IntegrityError, Tracking
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
        save_every_s: float = 1.0,
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
        # What is known to be on the bus (this relay published it, or found it published);
        # `flushed` waits on it.
        self.published_through = 0
        self._progress = asyncio.Condition()
        self._position_known: int | None = None  # read from the store once, then kept here
        self._position_saved = 0
        self._saved_at = float("-inf")
        self._lag_measured_at = float("-inf")
        self._save_every_s = save_every_s

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
        with contextlib.suppress(Exception):  # a store that is gone: the next start re-sends
            await self._save_position(idle=True)

    def wake(self) -> None:
        """Thread-safe: called by the store right after a save commits."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def flushed(self, timeout_s: float) -> bool:
        """Wait until everything this process saved so far is on the bus (at most
        `timeout_s`); False when it is not yet (NATS unreachable: the relay carries on)."""
        target = self._app.saved_through
        if self.published_through >= target:
            return True
        self.wake()
        async with self._progress:
            try:
                await asyncio.wait_for(
                    self._progress.wait_for(lambda: self.published_through >= target),
                    timeout_s,
                )
            except TimeoutError:
                return False
        return True

    async def _published(self, position: int) -> None:
        if position > self.published_through:
            self.published_through = position
            async with self._progress:
                self._progress.notify_all()

    async def position(self) -> int:
        return await asyncio.to_thread(self._in_store, self._position)

    def _in_store(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._store_calls:
            return call(*args, **kwargs)

    async def relay_pending(self) -> int:
        """Publish everything stored after the known position; return how many were read.

        The position is read from the store once, then kept here; it is saved after each
        acked batch, but at most every `save_every_s` while batches follow each other (a
        crash then re-sends at most that much, which JetStream drops as duplicates), and
        always when the relay stops or falls idle."""
        total = 0
        if self._position_known is None:
            self._position_known = await asyncio.to_thread(self._in_store, self._position)
            self._position_saved = self._position_known
            await self._published(self._position_known)
        while True:
            start = self._position_known
            notifications, outgoing = await asyncio.to_thread(self._in_store, self._read, start)
            if not notifications:
                await self._save_position(idle=True)
                return total
            if outgoing:
                acks = await self._bus.publish_batch(outgoing)
                duplicates = sum(1 for ack in acks if ack.duplicate)
                OUTBOX_PUBLISHED.labels(self._source, "true").inc(duplicates)
                OUTBOX_PUBLISHED.labels(self._source, "false").inc(len(acks) - duplicates)
            self._position_known = notifications[-1].id
            total += len(notifications)
            full = len(notifications) >= self._batch_size
            await self._save_position(idle=not full)
            await self._published(self._position_known)
            if not full:
                return total

    def _read(self, start: int) -> tuple[Sequence[Any], list[OutgoingMessage]]:
        notifications = self._app.recorder.select_notifications(
            start, self._batch_size, inclusive_of_start=False
        )
        outgoing = [m for m in map(self._message_for, notifications) if m is not None]
        return notifications, outgoing

    async def _save_position(self, *, idle: bool) -> None:
        position = self._position_known
        if position is None or position <= self._position_saved:
            return
        now = time.monotonic()
        if not idle and now - self._saved_at < self._save_every_s:
            return
        # IntegrityError: another relay of this store (an executor api replica) saved this
        # very position, so it is saved. Both relay every event; JetStream keeps one of each.
        with contextlib.suppress(IntegrityError):
            await asyncio.to_thread(
                self._in_store,
                self._app.tracking.insert_tracking,
                Tracking(self._tracking_name, position),
            )
        self._position_saved, self._saved_at = position, now
        OUTBOX_POSITION.labels(self._source).set(position)
        # What was stored and not yet published: this process's saves are known here; others'
        # (a CLI writing the store) only by asking the store, which is done now and then.
        stored = self._app.saved_through
        if now - self._lag_measured_at >= self._save_every_s:
            stored = await asyncio.to_thread(self._in_store, self._stored_through)
            self._lag_measured_at = now
        OUTBOX_LAG.labels(self._source).set(max(0, stored - position))

    def _stored_through(self) -> int:
        return self._app.recorder.max_notification_id() or 0

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
