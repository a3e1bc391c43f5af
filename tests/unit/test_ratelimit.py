"""The sliding window behind every per-user and per-address limit (shared/ratelimit.py)."""

from __future__ import annotations

import threading

from shared.ratelimit import SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_refused_attempts_are_not_counted() -> None:
    clock = Clock()
    window = SlidingWindow(2, 60, clock=clock)
    assert window.take("k") == window.take("k") == 0
    for _ in range(100):
        assert window.take("k") > 0
    clock.now += 60.5
    assert window.take("k") == 0


def test_parallel_requests_cannot_all_slip_under_the_limit() -> None:
    window = SlidingWindow(10, 60)
    admitted: list[bool] = []
    barrier = threading.Barrier(40)

    def attempt() -> None:
        barrier.wait()
        admitted.append(window.take("k") == 0)

    threads = [threading.Thread(target=attempt) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 10


def test_the_window_forgets_the_oldest_keys() -> None:
    window = SlidingWindow(1, 60, max_keys=3)
    for key in range(10):
        window.take(key)
    assert window.take(0) == 0  # forgotten, so allowed again: memory stays bounded


def test_an_event_given_back_frees_its_place_and_clear_forgets_the_key() -> None:
    clock = Clock()
    window = SlidingWindow(2, 60, clock=clock)
    assert window.take("k") == window.take("k") == 0
    assert window.take("k") > 0
    window.give_back("k")
    assert window.take("k") == 0
    assert window.take("k") == 60
    window.clear("k")
    assert window.take("k") == 0
    window.give_back("never-seen")  # nothing to give back: nothing happens
