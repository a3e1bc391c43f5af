"""The login throttle's arithmetic, on a clock the test moves."""

from __future__ import annotations

import pytest

from services.auth.throttle import LoginThrottle, LoginThrottled


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(clock: Clock, **limits: int) -> LoginThrottle:
    return LoginThrottle(
        max_per_user=limits.get("user", 3),
        max_per_address=limits.get("address", 5),
        window_s=60,
        max_keys=limits.get("keys", 1000),
        clock=clock,
    )


def test_an_account_is_held_after_its_failures_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    t = throttle(clock)
    for step in range(3):
        t.check("Alice", "10.0.0.1")
        t.failed("alice", "10.0.0.1")
        clock.now += 10 * step
    with pytest.raises(LoginThrottled) as refused:
        t.check("ALICE", "10.0.0.2")  # the name, in any case, from anywhere
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "30"}  # first failure at 1000, now 1030
    clock.now = 1060.0
    t.check("alice", "10.0.0.2")  # the first failure left the window


def test_an_address_is_held_after_failures_on_many_accounts() -> None:
    clock = Clock()
    t = throttle(clock)
    for name in ("a", "b", "c", "d", "e"):
        t.failed(name, "10.0.0.9")
    with pytest.raises(LoginThrottled):
        t.check("someone-else", "10.0.0.9")
    t.check("someone-else", "10.0.0.10")


def test_a_success_clears_the_account_not_the_address() -> None:
    clock = Clock()
    t = throttle(clock, user=2, address=3)
    t.failed("bob", "10.0.0.1")
    t.failed("bob", "10.0.0.1")
    t.succeeded("bob")
    t.check("bob", "10.0.0.2")
    t.failed("carol", "10.0.0.1")
    with pytest.raises(LoginThrottled):
        t.check("dave", "10.0.0.1")


def test_memory_is_bounded_by_the_number_of_keys() -> None:
    t = throttle(Clock(), keys=10)
    for i in range(1000):
        t.failed(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t._failures) == 10
