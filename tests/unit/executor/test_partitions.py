"""Which partition an execution is in, and how replicas share partitions (the pure part of
services/executor/partitions.py; the leases on a real NATS are in test_partition_leases)."""

from __future__ import annotations

import random
from collections import Counter
from uuid import UUID, uuid4

import pytest

from services.executor.partitions import fair_share, partition_of, plan
from shared.bus.streams import (
    LEGACY_NODE_RESULTS,
    PARTITION_HEADER,
    advance_subject,
    partition_results,
    result_subject,
)


def test_an_execution_is_in_the_same_partition_on_every_replica_and_release() -> None:
    # A fixed answer: the function must not change between versions (results in flight
    # name the partition of their execution).
    execution_id = UUID("6c1f0e9a-2b1d-4c3e-9f7a-0123456789ab")
    assert partition_of(execution_id, 16) == partition_of(UUID(str(execution_id)), 16)
    assert [partition_of(execution_id, p) for p in (1, 2, 16, 64)] == [0, 1, 15, 15]


def test_executions_spread_evenly_over_partitions() -> None:
    counts = Counter(partition_of(uuid4(), 16) for _ in range(16_000))
    assert set(counts) == set(range(16))
    assert all(800 <= n <= 1200 for n in counts.values()), counts


@pytest.mark.parametrize("replicas", [1, 2, 3, 5, 16, 20])
def test_fair_shares_add_up_to_every_partition(replicas: int) -> None:
    names = [f"executor-{uuid4().hex[:6]}-8103" for _ in range(replicas)]
    shares = [fair_share(name, names, 16) for name in names]
    assert sum(shares) == 16
    assert max(shares) - min(shares) <= 1


def settle(
    names: list[str], holders: dict[int, str], partitions: int, rng: random.Random
) -> tuple[dict[int, str], int]:
    """Replicas look at the bucket and act in random order until nobody moves; returns the
    holders and how many leases changed hands."""
    moved = 0
    for _ in range(50):
        changed = False
        for name in rng.sample(names, len(names)):
            moves = plan(name, names, holders, partitions)
            for n in moves.release:
                del holders[n]
                changed = True
            for n in moves.claim:
                assert n not in holders
                holders[n] = name
                moved += 1
                changed = True
        if not changed:
            return holders, moved
    raise AssertionError(f"no settled share after 50 rounds: {holders}")


def test_replicas_settle_on_fair_shares_with_every_partition_held() -> None:
    rng = random.Random(7)
    names = ["a-8103", "b-8103", "c-8103"]
    holders, _ = settle(names, {}, 16, rng)
    assert set(holders) == set(range(16))
    assert sorted(Counter(holders.values()).values()) == [5, 5, 6]


def test_a_replica_joining_takes_only_its_share_and_from_the_others() -> None:
    rng = random.Random(11)
    holders, _ = settle(["a-8103", "b-8103"], {}, 16, rng)
    before = dict(holders)
    holders, moved = settle(["a-8103", "b-8103", "c-8103"], holders, 16, rng)
    assert moved == Counter(holders.values())["c-8103"]  # no lease moved between a and b
    assert all(holders[n] == owner for n, owner in before.items() if holders[n] != "c-8103")


def test_a_replica_leaving_hands_its_partitions_to_the_rest() -> None:
    rng = random.Random(3)
    holders, _ = settle(["a-8103", "b-8103", "c-8103"], {}, 16, rng)
    orphaned = Counter(holders.values())["b-8103"]
    left = {n: h for n, h in holders.items() if h != "b-8103"}  # b's leases lapsed
    holders, moved = settle(["a-8103", "c-8103"], left, 16, rng)
    assert set(holders) == set(range(16))
    assert sorted(Counter(holders.values()).values()) == [8, 8]
    assert moved == orphaned


def test_results_go_to_the_partition_named_on_the_command() -> None:
    execution_id = str(uuid4())
    assert result_subject(execution_id, {PARTITION_HEADER: "7"}) == f"evt.node.7.{execution_id}"
    # A command sent before partitions (or a header that is not a number): the old subject.
    assert result_subject(execution_id, None) == f"evt.node.{execution_id}"
    assert result_subject(execution_id, {PARTITION_HEADER: "x"}) == f"evt.node.{execution_id}"
    # The old subject is one token shorter than any partition's: its consumer takes no other.
    assert LEGACY_NODE_RESULTS == "evt.node.*"
    assert partition_results(7) == "evt.node.7.>"
    assert advance_subject(7, execution_id).startswith("evt.node.7.")


def test_a_replica_that_comes_back_gets_mostly_the_same_partitions() -> None:
    # Its executions' state may still be in its cache; the fewer that move, the less to read.
    for seed in range(8):
        rng = random.Random(seed)
        names = [f"executor-{seed}-{x}-8103" for x in "abc"]
        holders, _ = settle(names, {}, 16, rng)
        before = {n for n, holder in holders.items() if holder == names[0]}
        holders, _ = settle(names[1:], {n: h for n, h in holders.items() if h != names[0]}, 16, rng)
        holders, _ = settle(names, holders, 16, rng)
        after = {n for n, holder in holders.items() if holder == names[0]}
        assert len(before & after) * 2 >= len(after), (seed, before, after)
