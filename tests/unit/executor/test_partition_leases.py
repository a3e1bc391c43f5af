"""Partition leases on a real nats-server (services/executor/partitions.py): replicas share
the partitions, hand them on when they stop or die, and stop deciding when cut off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest

from services.executor.partitions import BUCKET, Partitioning, PartitionLeases
from shared.bus.client import JetStreamBus
from shared.settings import PlatformSettings
from tests.support.processes import NatsServer

SECRET = "partition-test-secret-" + "x" * 32


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own: the bucket is global to a server."""
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Replica:
    """One replica's leases, with what it was told: ("gained"|"lost", partitions, and who
    held those leases in the bucket at that moment)."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        partitions: int = 16,
        lease_s: float = 2.0,
        stopping_s: float = 0.0,
    ) -> None:
        self.url = url
        self.stopping_s = stopping_s  # how long it takes to stop deciding (decisions under way)
        self.bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=url), name=name)
        self.told: list[tuple[str, frozenset[int], set[str]]] = []
        self.stopped: list[frozenset[int]] = []  # on_lost done: deciding nothing more there
        self.leases = PartitionLeases(
            self.bus,
            Partitioning(partitions, lease_s, name),
            on_gained=self._gained,
            on_lost=self._lost,
        )

    async def _gained(self, partitions: frozenset[int]) -> None:
        self.told.append(("gained", partitions, set()))

    async def _lost(self, partitions: frozenset[int]) -> None:
        holders: set[str] = set()
        if self.bus.connected:
            kv = await self.bus.js.key_value(BUCKET)
            for n in partitions:
                try:
                    holders.add(((await kv.get(f"lease.{n}")).value or b"").decode())
                except nats.js.errors.KeyNotFoundError:
                    holders.add("")
        self.told.append(("lost", partitions, holders))
        await asyncio.sleep(self.stopping_s)
        self.stopped.append(partitions)

    async def connect(self) -> Replica:
        self.bus.start()
        await self.bus.wait_ready(10)
        return self

    @property
    def owned(self) -> frozenset[int]:
        return self.leases.owned


@pytest.fixture
async def replicas(nats_server: NatsServer) -> AsyncIterator[Callable[..., Replica]]:
    made: list[Replica] = []

    def make(name: str, **kwargs: float) -> Replica:
        replica = Replica(nats_server.url, name, **kwargs)  # type: ignore[arg-type]
        made.append(replica)
        return replica

    yield make
    for replica in made:
        await replica.bus.close()


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_one_replica_holds_every_partition_and_records_their_count(
    replicas: Callable[..., Replica],
) -> None:
    a = await replicas("a-8103").connect()
    assert await a.leases.tick()
    assert a.owned == frozenset(range(16))
    assert a.told == [("gained", frozenset(range(16)), set())]
    # A replica set to another count runs with the recorded one: results already sent name
    # their partitions by it.
    b = await replicas("b-8103", partitions=4).connect()
    await b.leases.tick()
    assert await b.leases.partition_count() == 16


async def test_two_replicas_split_the_partitions_and_the_first_stops_deciding_before_it_lets_go(
    replicas: Callable[..., Replica],
) -> None:
    a = await replicas("a-8103").connect()
    b = await replicas("b-8103").connect()
    await a.leases.tick()
    assert not await b.leases.tick()  # its share is 8, all are held: it waits for a
    await a.leases.tick()  # a sees b and gives 8 up
    assert await b.leases.tick()
    assert len(a.owned) == len(b.owned) == 8
    assert a.owned | b.owned == frozenset(range(16))
    # a stopped deciding there while the leases were still a's, then let them go.
    assert a.told[-1] == ("lost", b.owned, {"a-8103"})


async def test_partitions_given_up_stay_held_until_their_decisions_are_done(
    replicas: Callable[..., Replica],
) -> None:
    a = await replicas("a-8103", lease_s=2.0, stopping_s=5.0).connect()
    b = await replicas("b-8103", lease_s=2.0).connect()
    await a.leases.tick()
    await b.leases.tick()
    a.leases.start()  # a gives 8 up; stopping there takes longer than two lease times
    await until(lambda: len(a.owned) == 8)
    given_up = frozenset(range(16)) - a.owned
    # a's leases would lapse after 2 s unrenewed: b claims nothing until a stopped deciding.
    began = time.monotonic()
    while not b.owned:
        await b.leases.tick()
        assert not b.owned or given_up in a.stopped, "claimed while a was still deciding there"
        await asyncio.sleep(0.2)
        assert time.monotonic() - began < 15.0, "never claimed what a gave up"
    assert b.owned == given_up
    a.stopping_s = 0.0
    assert a.owned | b.owned == frozenset(range(16))
    await a.leases.stop()


async def test_a_replica_that_stops_hands_its_partitions_to_the_rest(
    replicas: Callable[..., Replica],
) -> None:
    a = await replicas("a-8103").connect()
    b = await replicas("b-8103").connect()
    for replica in (a, b, a, b):
        await replica.leases.tick()
    held_by_b = b.owned
    await b.leases.stop()
    assert b.told[-1][:2] == ("lost", held_by_b)
    assert await a.leases.tick()  # at once: b released its leases and left
    assert a.owned == frozenset(range(16))


async def test_a_dead_replicas_partitions_move_once_its_leases_lapse(
    replicas: Callable[..., Replica],
) -> None:
    a = await replicas("a-8103", lease_s=2.0).connect()
    b = await replicas("b-8103", lease_s=2.0).connect()
    for replica in (a, b, a, b):
        await replica.leases.tick()
    a_before = a.owned
    assert len(a_before) == 8
    # b dies: no release, no more renewals. a keeps renewing its own until b's lapse.
    a.leases.start()
    await until(lambda: a.owned == frozenset(range(16)))
    assert a.told[-1][:2] == ("gained", frozenset(range(16)) - a_before)
    await a.leases.stop()


async def test_a_replica_restarted_in_place_takes_its_partitions_back_at_once(
    replicas: Callable[..., Replica],
) -> None:
    before = await replicas("a-8103", lease_s=60.0).connect()
    await before.leases.tick()
    # Killed (nothing released); the same name (host and port) starts again.
    after = await replicas("a-8103", lease_s=60.0).connect()
    assert await after.leases.tick()
    assert after.owned == frozenset(range(16))
    assert after.told == [("gained", frozenset(range(16)), set())]


async def test_a_replica_cut_off_from_nats_stops_deciding_and_claims_again_after(
    replicas: Callable[..., Replica], nats_server: NatsServer
) -> None:
    a = await replicas("a-8103", lease_s=2.0).connect()
    a.leases.start()
    await until(lambda: a.owned == frozenset(range(16)))
    nats_server.kill9()
    await until(lambda: not a.owned)  # its leases may be another replica's by now
    assert a.told[-1] == ("lost", frozenset(range(16)), set())
    nats_server.start()  # same store: the bucket and its count are still there
    await until(lambda: a.owned == frozenset(range(16)), timeout=30)
    await a.leases.stop()
