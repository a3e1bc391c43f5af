"""The login and registration throttles' arithmetic, on a clock the test moves, and the
race of parallel guesses on a real clock with real threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.auth.throttle import (
    LoginThrottle,
    LoginThrottled,
    RegistrationThrottle,
    RegistrationThrottled,
)


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
        t.attempt("Alice" if step == 0 else "alice", "10.0.0.1")  # each one failed
        clock.now += 10 * step
    with pytest.raises(LoginThrottled) as refused:
        t.attempt("ALICE", "10.0.0.2")  # the name, in any case, from anywhere
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "30"}  # first failure at 1000, now 1030
    clock.now = 1060.0
    t.attempt("alice", "10.0.0.2")  # the first failure left the window


def test_an_address_is_held_after_failures_on_many_accounts() -> None:
    clock = Clock()
    t = throttle(clock)
    for name in ("a", "b", "c", "d", "e"):
        t.attempt(name, "10.0.0.9")
    with pytest.raises(LoginThrottled):
        t.attempt("someone-else", "10.0.0.9")
    t.attempt("someone-else", "10.0.0.10")


def test_a_refused_attempt_is_not_counted() -> None:
    clock = Clock()
    t = throttle(clock, user=1, address=100)
    t.attempt("eve", "10.0.0.1")
    for _ in range(5):
        with pytest.raises(LoginThrottled):
            t.attempt("eve", "10.0.0.1")
    clock.now += 61  # only the one counted attempt had to leave the window
    t.attempt("eve", "10.0.0.1")


def test_a_success_clears_the_account_and_its_own_attempt_not_the_address() -> None:
    clock = Clock()
    t = throttle(clock, user=2, address=3)
    t.attempt("bob", "10.0.0.1")
    ok = t.attempt("bob", "10.0.0.1")
    t.succeeded(ok)  # bob's failures gone; the address keeps one failure, not two
    t.attempt("bob", "10.0.0.2")
    t.attempt("carol", "10.0.0.1")
    t.attempt("carol", "10.0.0.1")
    with pytest.raises(LoginThrottled):
        t.attempt("dave", "10.0.0.1")


def test_parallel_guesses_cannot_all_pass_before_any_is_counted() -> None:
    """40 guesses at once for one account: the check and the count are one step, so exactly
    the limit pass, however the threads interleave (before: all 40 passed the check)."""
    t = LoginThrottle(max_per_user=5, max_per_address=1000, window_s=600)
    start = threading.Barrier(40)

    def guess(i: int) -> bool:
        start.wait()
        try:
            t.attempt("victim", f"10.1.0.{i}")
        except LoginThrottled:
            return False
        return True

    with ThreadPoolExecutor(40) as pool:
        passed = sum(pool.map(guess, range(40)))
    assert passed == 5


def test_memory_is_bounded_by_the_number_of_keys() -> None:
    t = throttle(Clock(), keys=10)
    for i in range(1000):
        t.attempt(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(t._accounts._events) == len(t._addresses._events) == 10


def test_registrations_are_counted_per_address_successful_or_not() -> None:
    clock = Clock()
    t = RegistrationThrottle(max_per_address=3, window_s=3600, clock=clock)
    for _ in range(3):
        t.attempt("10.0.0.5")
    with pytest.raises(RegistrationThrottled) as refused:
        t.attempt("10.0.0.5")
    assert refused.value.status_code == 429
    assert refused.value.headers == {"Retry-After": "3600"}
    t.attempt("10.0.0.6")  # another address is not held
    clock.now += 3600
    t.attempt("10.0.0.5")
