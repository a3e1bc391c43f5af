"""The in-process baseline: the same graph run by `local_engine.run_locally`, with no bus,
store or workers, so each distributed figure can be given as a ratio to it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from services.executor.local_engine import run_locally


def local_timings(
    graph: dict[str, Any], make_input: Callable[[int], Any], runs: int
) -> list[float]:
    """Seconds per run, each checked to complete."""
    timings = []
    for i in range(runs):
        started = time.perf_counter()
        execution = run_locally(graph, make_input(i))
        timings.append(time.perf_counter() - started)
        assert execution.status == "completed", execution.error
    return timings
