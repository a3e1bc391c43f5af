"""Reading history for the audit: a service's stored events, and the `EVENTS` stream.

A replay of the stream ends at the stream's last sequence as it was when the replay began, or
when the consumer has nothing pending (the rest of the stream is filtered out or was deleted).
It never ends because one fetch came back empty: a slow or busy server makes fetches time
out, and ending there would silently drop the rest. Events published while the replay runs
are left out, so the replay is the stream as it stood at one moment. A server that delivers
nothing at all for `stall_timeout_s` while messages are pending ends the replay with
`ReplayIncomplete`, which says how far it got.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.bus.streams import EVENTS_STREAM
from shared.eventstore import EventSourcedApplication

# (read so far, how many there are to read); the total grows if the stream does.
Progress = Callable[[int, int], None]
FETCH_BATCH = 500
FETCH_TIMEOUT_S = 1.0
STALL_TIMEOUT_S = 60.0
STORE_PAGE = 500


@dataclass(frozen=True)
class StreamMessage:
    sequence: int
    msg_id: str  # Nats-Msg-Id: the stored event it was published from
    envelope: dict[str, Any]


class ReplayIncomplete(RuntimeError):
    """The server stopped delivering before the replay reached its end."""

    def __init__(self, read_up_to: int, last_sequence: int, stalled_s: float) -> None:
        super().__init__(
            f"the EVENTS stream delivered nothing for {stalled_s:g} s; read up to sequence "
            f"{read_up_to} of {last_sequence}, so the replay is incomplete"
        )
        self.read_up_to = read_up_to
        self.last_sequence = last_sequence


class Fetcher(Protocol):
    """What the replay needs of a JetStream pull subscription (tests may slow it down)."""

    async def fetch(self, batch: int = 1, timeout: float | None = 5) -> list[Any]: ...

    async def consumer_info(self) -> Any: ...


def _no_progress(done: int, total: int) -> None:
    return None


async def stream_messages(
    nats_url: str,
    *,
    from_seq: int | None = None,
    since: datetime | None = None,
    progress: Progress = _no_progress,
    batch: int = FETCH_BATCH,
    fetch_timeout_s: float = FETCH_TIMEOUT_S,
    stall_timeout_s: float = STALL_TIMEOUT_S,
    wrap: Callable[[Fetcher], Fetcher] = lambda subscription: subscription,
) -> AsyncIterator[StreamMessage]:
    """The `EVENTS` stream's messages in order, from `from_seq` or `since` (default: the
    first), up to its last sequence when the replay began. `wrap` lets a test stand between
    the replay and the subscription."""
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        last = int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
        if last == 0 or (from_seq is not None and from_seq > last):
            progress(0, 0)
            return
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
        if from_seq is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, from_seq
        elif since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = since
        subscription = await js.pull_subscribe("events.>", stream=EVENTS_STREAM, config=config)
        try:
            fetcher = wrap(subscription)
            async for message in _read_until(
                fetcher, last, progress, batch, fetch_timeout_s, stall_timeout_s
            ):
                yield message
        finally:
            await subscription.unsubscribe()
    finally:
        await nc.close()


async def _read_until(
    fetcher: Fetcher,
    last: int,
    progress: Progress,
    batch: int,
    fetch_timeout_s: float,
    stall_timeout_s: float,
) -> AsyncIterator[StreamMessage]:
    pending = int((await fetcher.consumer_info()).num_pending)
    total, done, sequence = pending, 0, 0
    progress(done, total)
    if pending == 0:  # `since` after the last event
        return
    delivered_at = time.monotonic()
    while True:
        try:
            messages = await fetcher.fetch(batch, timeout=fetch_timeout_s)
        except (NatsTimeout, TimeoutError):
            info = await fetcher.consumer_info()
            if int(info.num_pending) == 0 or int(info.delivered.stream_seq) >= last:
                break  # nothing left that matches: the rest is filtered out or deleted
            if time.monotonic() - delivered_at > stall_timeout_s:
                raise ReplayIncomplete(sequence, last, stall_timeout_s) from None
            continue  # a slow server, not the end
        delivered_at = time.monotonic()
        for message in messages:
            sequence = int(message.metadata.sequence.stream)
            if sequence > last:  # published after the replay began
                progress(done, done)
                return
            done += 1
            remaining = int(message.metadata.num_pending)
            total = max(total, done + remaining)
            headers = message.headers or {}
            yield StreamMessage(sequence, headers.get("Nats-Msg-Id", ""), json.loads(message.data))
            if sequence >= last or remaining == 0:
                progress(done, done)
                return
        progress(done, total)
    progress(done, done)


def stored_events(
    app: EventSourcedApplication, start: int = 1, progress: Progress = _no_progress
) -> Iterator[tuple[int, Any]]:
    """(notification id, domain event) of a service's store, from `start`, up to the last one
    stored when the replay began."""
    last = app.recorder.max_notification_id() or 0
    total = max(0, last - start + 1)
    position = max(0, start - 1)
    progress(0, total)
    while position < last:
        page = app.recorder.select_notifications(position, STORE_PAGE, inclusive_of_start=False)
        if not page:
            break
        for notification in page:
            if notification.id > last:
                progress(total, total)
                return
            yield notification.id, app.mapper.to_domain_event(notification)
        position = page[-1].id
        progress(min(total, position - start + 1), total)
    progress(total, total)
