"""Partitions of the executions, and which executor api replica decides each (ADR 0009).

Every execution falls in one of P partitions (`partition_of`, a hash of its id). A replica
decides only the executions of the partitions it holds a lease on: a key `lease.<n>` in the
NATS key-value bucket `executor-partitions`, claimed by compare-and-set and kept by renewing
it every quarter of its lifetime (`AGENTFLOW_PARTITION_LEASE_S`). Each live replica announces
itself under `member.<name>` and aims for a fair share of P, so when one joins the others give
some up, and when one dies its leases lapse and the others claim them.

The bucket also records P (`partitions`) the first time a replica starts: a replica whose
setting differs uses the recorded count, since results already sent name their partitions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from uuid import UUID

from nats.js.api import KeyValueConfig
from nats.js.errors import (
    APIError,
    BadRequestError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue
from pydantic import BaseModel

from services.executor.settings import ExecutorSettings
from shared.bus.client import BusUnavailable, JetStreamBus

log = logging.getLogger("agentflow.partitions")

BUCKET = "executor-partitions"
COUNT_KEY = "partitions"
_WRONG_LAST_SEQUENCE = (10071, 10164)  # JetStream: the key changed since it was read


def partition_of(execution_id: UUID, partitions: int) -> int:
    """The partition of an execution: the same on every replica and across restarts."""
    digest = hashlib.blake2b(execution_id.bytes, digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def fair_share(replica: str, members: Collection[str], partitions: int) -> int:
    """How many partitions `replica` should hold among `members` (itself included): P / N,
    the first P mod N of them by name one more."""
    ordered = sorted(set(members) | {replica})
    base, extra = divmod(partitions, len(ordered))
    return base + (1 if ordered.index(replica) < extra else 0)


def preference(replica: str, partition: int) -> int:
    """How much `replica` wants `partition` (rendezvous hashing): among the live replicas the
    one that wants a partition most is its natural owner. Replicas give up first what is
    another's natural partition and claim first their own, so a replica that leaves and comes
    back gets mostly the same partitions, and a join moves only what it must."""
    digest = hashlib.blake2b(f"{replica}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Moves:
    quota: int
    release: tuple[int, ...] = ()
    claim: tuple[int, ...] = ()  # free partitions to try, best first


def plan(
    replica: str, members: Collection[str], holders: Mapping[int, str], partitions: int
) -> Moves:
    """What `replica` should do, seeing these live members and lease holders."""
    live = sorted(set(members) | {replica})
    quota = fair_share(replica, live, partitions)

    held = Counter(holders.values())

    def rank(partition: int) -> tuple[bool, bool, int]:
        """Ours naturally; else not owed to its natural owner (who holds its share)."""
        natural = max(live, key=lambda member: preference(member, partition))
        owed = held[natural] < fair_share(natural, live, partitions)
        return natural == replica, not owed, preference(replica, partition)

    mine = [n for n, holder in holders.items() if holder == replica]
    if len(mine) > quota:
        return Moves(quota, release=tuple(sorted(mine, key=rank)[: len(mine) - quota]))
    free = sorted((n for n in range(partitions) if n not in holders), key=rank, reverse=True)
    return Moves(quota, claim=tuple(free[: quota - len(mine)]))


def default_replica_id(port: int) -> str:
    """The host's (pod's) name and the port: unique among live replicas, and the same when a
    process is restarted in place, which then takes its partitions back at once."""
    return f"{socket.gethostname()}-{port}"


def _key_part(replica: str) -> str:
    return re.sub(r"[^-_=A-Za-z0-9]", "_", replica)


@dataclass(frozen=True)
class Partitioning:
    partitions: int = 16
    lease_s: float = 10.0
    replica_id: str = ""
    stream_replicas: int = 1  # copies of the bucket on a NATS cluster

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> Partitioning:
        return cls(
            partitions=settings.execution_partitions,
            lease_s=settings.partition_lease_s,
            replica_id=settings.replica_id or default_replica_id(settings.port),
            stream_replicas=settings.stream_replicas,
        )


class AdvanceRequest(BaseModel):
    """`evt.node.<partition>.<execution_id>.advance`: a start or resume taken by a replica
    that does not own the execution's partition, handed to the one that does."""

    execution_id: str
    recover: bool = False


PartitionsChanged = Callable[[frozenset[int]], Awaitable[None]]


class PartitionLeases:
    """The leases of one replica. `on_gained` runs for partitions it starts to hold (it
    then carries their runs on). `on_lost` runs before it gives one up, the lease renewed
    meanwhile, or once the lease lapsed; once `on_lost` returns the replica decides nothing
    more there."""

    def __init__(
        self,
        bus: JetStreamBus,
        partitioning: Partitioning,
        *,
        on_gained: PartitionsChanged,
        on_lost: PartitionsChanged,
    ) -> None:
        self._bus = bus
        self._setting = partitioning
        self.replica = partitioning.replica_id or default_replica_id(0)
        self._lease_s = partitioning.lease_s
        self._on_gained = on_gained
        self._on_lost = on_lost
        self.count: int | None = None  # P, once read from (or recorded in) the bucket
        self._counted = asyncio.Event()
        self._kv: KeyValue | None = None
        self._held: dict[int, int] = {}  # partition -> revision of our lease
        self._renewed: dict[int, float] = {}  # partition -> when its last renewal was sent
        self._releasing: dict[int, asyncio.Task[None]] = {}  # being given up
        self._first_round = True  # leases under our name are ours (a restart in place)
        self._frozen = False  # stopping: renew, but neither claim nor give up
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- what the orchestrator asks ------------------------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        """The partitions this replica decides."""
        return frozenset(n for n in self._held if n not in self._releasing)

    def owns(self, partition: int) -> bool:
        return partition in self._held and partition not in self._releasing

    async def partition_count(self) -> int:
        """P, waiting for the first connection to NATS if it is not known yet."""
        await self._counted.wait()
        assert self.count is not None
        return self.count

    def partition(self, execution_id: UUID) -> int | None:
        """The execution's partition (None until P is known)."""
        return None if self.count is None else partition_of(execution_id, self.count)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._bus.on_connected(self._connected)
        self._task = asyncio.create_task(self._run(), name="partition-leases")

    async def _connected(self, _: object) -> None:
        self._kv = None  # a restarted NATS may have lost the bucket: open (make) it again
        self._wake.set()

    def freeze(self) -> None:
        """Keep the leases held now (renewed) but take and give up none: the replica is
        stopping and finishes what it decided before `stop` gives them up."""
        self._frozen = True

    async def stop(self) -> None:
        """Give every partition up (the others claim them on their next round)."""
        self._frozen = True
        await asyncio.gather(*set(self._releasing.values()), return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        held, self._held = dict(self._held), {}
        if held:
            await self._on_lost(frozenset(held))
        with contextlib.suppress(Exception):  # NATS may be gone: the leases then lapse
            kv = await self._bucket()
            for partition, revision in held.items():
                await self._delete(kv, partition, revision)
            await kv.purge(self._member_key(), msg_ttl=self._lease_s)
        if held:
            log.info("released partitions %s", sorted(held))

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._lapse()
            settled = True
            try:
                settled = await self.tick()
            except asyncio.CancelledError:
                raise
            except BusUnavailable as exc:
                log.debug("partition leases wait for NATS: %s", exc)
            except Exception as exc:  # e.g. NATS restarting; the next round tries again
                log.warning("renewing partition leases failed: %r", exc)
                self._kv = None
            # Unsettled (waiting for another replica to give partitions up): look again soon.
            pause = self._lease_s / 4 if settled else min(1.0, self._lease_s / 8)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _lapse(self) -> None:
        """Stop deciding where our lease may have lapsed on the server (NATS unreachable for
        most of a lease): another replica may hold it by now."""
        deadline = time.monotonic() - self._lease_s * 0.8
        lapsed = {n for n in self._held if self._renewed.get(n, 0.0) < deadline}
        if not lapsed:
            return
        for partition in lapsed:
            del self._held[partition]
        log.warning("leases of partitions %s lapsed (NATS unreachable)", sorted(lapsed))
        deciding = lapsed - set(self._releasing)  # those being given up are told already
        if deciding:
            await self._on_lost(frozenset(deciding))

    # -- one round ---------------------------------------------------------------------------

    async def tick(self) -> bool:
        """Announce ourselves, renew our leases, give up or claim partitions towards a fair
        share. True when we hold our share."""
        kv = await self._bucket()
        assert self.count is not None
        sent = time.monotonic()
        await self._put(self._member_key(), revision=None)
        members = await self._members(kv)
        holders = await self._holders(kv, self.count)
        lost: set[int] = set()
        adopted: set[int] = set()
        for partition, (holder, revision) in holders.items():
            if partition in self._releasing:
                continue  # renewed by its release until given up
            if holder != self.replica:
                if partition in self._held:
                    lost.add(partition)  # lapsed and taken while we could not renew
                continue
            if partition not in self._held and not self._first_round:
                # Ours but not held: a renewal that crossed our own release. Let it go.
                await self._delete(kv, partition, revision)
                holders[partition] = ("", revision)
                continue
            renewed = await self._renew(partition, revision)
            if renewed is None:
                lost.add(partition)
                continue
            if partition not in self._held:
                adopted.add(partition)  # ours before this process started in place
            self._held[partition] = renewed
            self._renewed[partition] = sent
        self._first_round = False
        lost |= {n for n in self._held if n not in holders and n not in self._releasing}
        if lost:
            for partition in lost:
                self._held.pop(partition, None)
            log.warning("lost partitions %s to other replicas", sorted(lost))
            await self._on_lost(frozenset(lost))
        if adopted:
            await self._on_gained(frozenset(adopted))
        if self._frozen:
            return True
        # Our leases being given up, and ours that we could not renew: neither ours nor free.
        current = {
            n: (h if h != self.replica or self.owns(n) else "") for n, (h, _) in holders.items()
        }
        moves = plan(self.replica, members, current, self.count)
        if moves.release:
            await self._release(moves.release)
        gained: set[int] = set()
        for partition in moves.claim:
            claimed = await self._claim(kv, partition)
            if claimed is not None:
                self._held[partition] = claimed
                self._renewed[partition] = sent
                gained.add(partition)
        if gained:
            log.info("now holding partitions %s (share %d of %d)", sorted(gained), moves.quota,
                     self.count)  # fmt: skip
            await self._on_gained(frozenset(gained))
        return len(self.owned) == moves.quota

    async def _release(self, partitions: tuple[int, ...]) -> None:
        """Give partitions up: stop deciding there first, renewing their leases meanwhile,
        then let the leases go (never two deciders by our doing). Usually done at once;
        a decision that takes long finishes in the background."""
        task = asyncio.create_task(self._give_up(frozenset(partitions)))
        for partition in partitions:
            self._releasing[partition] = task
        await asyncio.wait({task}, timeout=self._lease_s / 8)

    async def _give_up(self, partitions: frozenset[int]) -> None:
        stopping = asyncio.ensure_future(self._on_lost(partitions))
        try:
            while not (await asyncio.wait({stopping}, timeout=self._lease_s / 4))[0]:
                await self._renew_all(partitions)
            if not stopping.cancelled() and stopping.exception() is not None:
                log.warning("stopping partitions %s failed: %r", sorted(partitions),
                            stopping.exception())  # fmt: skip
            kv = await self._bucket()
            for partition in partitions:
                revision = self._held.pop(partition, None)
                if revision is not None:
                    await self._delete(kv, partition, revision)
            log.info("gave partitions %s up to share them", sorted(partitions))
        except Exception as exc:  # NATS away: the leases lapse instead
            log.warning("giving partitions %s up failed: %r", sorted(partitions), exc)
            for partition in partitions:
                self._held.pop(partition, None)
        finally:
            for partition in partitions:
                self._releasing.pop(partition, None)
            self._wake.set()

    async def _renew_all(self, partitions: frozenset[int]) -> None:
        for partition in partitions:
            revision = self._held.get(partition)
            if revision is None:
                continue
            sent = time.monotonic()
            renewed = await self._renew(partition, revision)
            if renewed is None:
                self._held.pop(partition, None)
            else:
                self._held[partition] = renewed
                self._renewed[partition] = sent

    async def _claim(self, kv: KeyValue, partition: int) -> int | None:
        try:
            revision: int = await kv.create(
                self._lease_key(partition), self.replica.encode(), msg_ttl=self._lease_s
            )
        except KeyWrongLastSequenceError:
            return None  # another replica was quicker
        return revision

    async def _renew(self, partition: int, revision: int) -> int | None:
        try:
            return await self._put(self._lease_key(partition), revision=revision)
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                return None
            raise

    async def _delete(self, kv: KeyValue, partition: int, revision: int) -> None:
        with contextlib.suppress(APIError):  # changed meanwhile: not ours to delete
            await kv.delete(self._lease_key(partition), last=revision)

    async def _put(self, key: str, *, revision: int | None) -> int:
        """Write our name under `key` for one lease time; with `revision`, only if the key
        is still at it (KeyValue.update cannot set a message's time to live)."""
        headers = (
            None if revision is None else {"Nats-Expected-Last-Subject-Sequence": str(revision)}
        )
        ack = await self._bus.js.publish(
            f"$KV.{BUCKET}.{key}", self.replica.encode(), headers=headers, msg_ttl=self._lease_s
        )
        return int(ack.seq)

    # -- reading the bucket ------------------------------------------------------------------

    async def _bucket(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        js = self._bus.js
        config = KeyValueConfig(
            bucket=BUCKET,
            description="Which executor api replica decides each partition of the executions.",
            history=1,
            replicas=self._setting.stream_replicas,
        )
        try:
            kv = await js.create_key_value(config)
        except BadRequestError:  # made before with other settings (e.g. its replicas)
            kv = await js.key_value(BUCKET)
        await self._read_count(kv)
        self._kv = kv
        return kv

    async def _read_count(self, kv: KeyValue) -> None:
        wanted = self.count or self._setting.partitions
        try:
            await kv.create(COUNT_KEY, str(wanted).encode())
            recorded = wanted
        except KeyWrongLastSequenceError:
            recorded = int((await kv.get(COUNT_KEY)).value or b"0")
        if recorded != self._setting.partitions and self.count is None:
            log.warning(
                "AGENTFLOW_EXECUTION_PARTITIONS is %d but the platform runs with %d "
                "partitions (recorded in NATS, bucket %s): using %d",
                self._setting.partitions, recorded, BUCKET, recorded,
            )  # fmt: skip
        if self.count is None:
            self.count = recorded
            self._counted.set()

    async def _members(self, kv: KeyValue) -> set[str]:
        info = await self._bus.js.stream_info(
            f"KV_{BUCKET}", subjects_filter=f"$KV.{BUCKET}.member.>"
        )
        members = {self.replica}
        for subject in info.state.subjects or {}:
            key = subject.removeprefix(f"$KV.{BUCKET}.")
            with contextlib.suppress(KeyNotFoundError):  # left (purged) or expired meanwhile
                members.add(((await kv.get(key)).value or b"").decode())
        return members

    async def _holders(self, kv: KeyValue, count: int) -> dict[int, tuple[str, int]]:
        async def holder(partition: int) -> tuple[int, tuple[str, int] | None]:
            try:
                entry = await kv.get(self._lease_key(partition))
            except KeyNotFoundError:  # never claimed, released or lapsed
                return partition, None
            return partition, ((entry.value or b"").decode(), entry.revision or 0)

        found = await asyncio.gather(*(holder(n) for n in range(count)))
        return {n: held for n, held in found if held is not None}

    @staticmethod
    def _lease_key(partition: int) -> str:
        return f"lease.{partition}"

    def _member_key(self) -> str:
        return f"member.{_key_part(self.replica)}"
