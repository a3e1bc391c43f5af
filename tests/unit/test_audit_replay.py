"""The audit's replay of the EVENTS stream, on a real nats-server of each test's own: it reads
to the stream's last sequence however slowly the server answers, and no further."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout

from services.audit.replay import Fetcher, ReplayIncomplete, StreamMessage, stream_messages
from shared.bus.client import ensure_streams
from shared.bus.streams import EVENTS_STREAM, stream_configs
from shared.settings import PlatformSettings
from tests.support.processes import NatsServer

SECRET = "audit-replay-test-secret-" + "x" * 32


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    own = NatsServer(tmp_path)
    own.start()
    yield own
    own.stop()


async def publish(url: str, count: int, first: int = 0) -> int:
    """`count` events numbered from `first`; the stream's last sequence after them."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, stream_configs(PlatformSettings(jwt_secret=SECRET)))
        for number in range(first, first + count):
            body = json.dumps({"type": "Test", "number": number}).encode()
            await js.publish(f"events.test.{number}", body, headers={"Nats-Msg-Id": f"m{number}"})
        return int((await js.stream_info(EVENTS_STREAM)).state.last_seq)
    finally:
        await nc.close()


async def replay(url: str, **options: Any) -> list[StreamMessage]:
    return [message async for message in stream_messages(url, **options)]


class SlowServer:
    """Stands between the replay and the real subscription as a loaded server would: some
    fetches come back empty (nats-py raises its TimeoutError), the others with at most
    `most` messages however many are waiting."""

    def __init__(self, real: Fetcher, *, empty_every: int = 2, most: int = 7) -> None:
        self._real = real
        self._empty_every = empty_every
        self._most = most
        self.fetches = 0
        self.empty = 0

    async def fetch(self, batch: int = 1, timeout: float | None = 5) -> list[Any]:
        self.fetches += 1
        if (self.fetches - 1) % self._empty_every == 0:  # the first fetch among them
            self.empty += 1
            raise NatsTimeout
        return await self._real.fetch(min(batch, self._most), timeout=timeout)

    async def consumer_info(self) -> Any:
        return await self._real.consumer_info()


async def test_a_replay_longer_than_one_fetch_reads_every_event(server: NatsServer) -> None:
    last = await publish(server.url, 1234)
    seen: list[tuple[int, int]] = []
    during: list[int] = []  # progress reported while messages were still arriving

    def progress(done: int, total: int) -> None:
        seen.append((done, total))

    messages: list[StreamMessage] = []
    async for message in stream_messages(server.url, progress=progress, batch=100):
        messages.append(message)
        if len(messages) == 600:
            during.append(max(done for done, _ in seen))
    assert [m.envelope["number"] for m in messages] == list(range(1234))
    assert [m.sequence for m in messages] == list(range(1, last + 1))
    assert messages[0].msg_id == "m0"
    assert seen[0] == (0, 1234)  # the total is known before the first fetch
    assert 0 < during[0] < 1234  # shown while fetching, not only after
    assert seen[-1] == (1234, 1234)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


async def test_empty_and_short_fetches_do_not_end_the_replay(server: NatsServer) -> None:
    """The old reader stopped at the first fetch that timed out: here, the very first."""
    await publish(server.url, 300)
    slow: list[SlowServer] = []

    def wrap(real: Fetcher) -> Fetcher:
        slow.append(SlowServer(real))
        return slow[0]

    messages = await replay(server.url, wrap=wrap, fetch_timeout_s=0.2)
    assert [m.envelope["number"] for m in messages] == list(range(300))
    assert slow[0].empty > 40  # every other fetch came back empty, the first one included


async def test_a_replay_stops_at_the_last_sequence_it_began_with(server: NatsServer) -> None:
    last = await publish(server.url, 300)
    late: asyncio.Task[int] | None = None
    messages: list[StreamMessage] = []
    async for message in stream_messages(server.url, batch=50):
        messages.append(message)
        if late is None:  # the stream grows while the replay reads it
            late = asyncio.create_task(publish(server.url, 200, first=300))
    assert late is not None
    grown = await late
    assert grown == last + 200
    assert [m.sequence for m in messages] == list(range(1, last + 1))
    again = await replay(server.url, from_seq=last + 1)
    assert [m.envelope["number"] for m in again] == list(range(300, 500))


async def test_a_replay_from_a_sequence_or_a_time(server: NatsServer) -> None:
    last = await publish(server.url, 20)
    later = await replay(server.url, from_seq=15)
    assert [m.sequence for m in later] == list(range(15, last + 1))
    assert await replay(server.url, from_seq=last + 1) == []
    nc = await nats.connect(server.url)
    try:
        fifteenth = await nc.jetstream().get_msg(EVENTS_STREAM, seq=15)
    finally:
        await nc.close()
    assert fifteenth.time is not None
    since = await replay(server.url, since=fifteenth.time)
    assert 1 < since[0].sequence <= 15  # times are kept to the microsecond
    assert since[-1].sequence == last
    assert await replay(server.url, since=fifteenth.time + timedelta(days=1)) == []


async def test_an_empty_stream_replays_nothing_at_once(server: NatsServer) -> None:
    await publish(server.url, 0)
    totals: list[tuple[int, int]] = []
    assert await replay(server.url, progress=lambda d, t: totals.append((d, t))) == []
    assert totals == [(0, 0)]


async def test_a_server_that_stops_delivering_is_an_error_not_an_end(
    server: NatsServer,
) -> None:
    await publish(server.url, 30)

    def silent(real: Fetcher) -> Fetcher:
        return SlowServer(real, empty_every=1)  # every fetch comes back empty

    with pytest.raises(ReplayIncomplete) as caught:
        await replay(server.url, wrap=silent, fetch_timeout_s=0.1, stall_timeout_s=0.5)
    assert (caught.value.read_up_to, caught.value.last_sequence) == (0, 30)
    assert "incomplete" in str(caught.value)
