"""4. Cost growth: linear chains of transforms, and a loop over more and more items. The time
per node (per item) should stay flat as the graph (the list) grows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.client import create_workflow, run_and_follow
from bench.context import Context
from bench.report import Figure, median
from bench.scenarios.baseline import local_timings
from bench.workflows import chain, chain_nodes, loop

S = "cost"
FLAT = 1.25  # largest size's cost per unit at most 25% above the smallest's


def repeats(size: int, largest: int) -> int:
    return 1 if size == largest else 3


async def timed_runs(
    ctx: Context, graph: dict[str, Any], input_data: dict[str, Any], expected: Any, runs: int
) -> tuple[float | None, list[str]]:
    """Median seconds of `runs` runs after one warm-up run (None: none completed right),
    and what went wrong in the runs that did not."""
    platform, api = ctx.running()
    workflow_id = await create_workflow(api, graph)
    timings: list[float] = []
    problems: list[str] = []
    for i in range(runs + 1):
        outcome = await run_and_follow(platform, api, workflow_id, input_data)
        if outcome.final != "completed":
            problems.append(outcome.final)
        elif outcome.output_data != expected:
            problems.append(f"output {outcome.output_data!r}"[:200])
        elif i > 0:
            timings.append(outcome.latency_s)
    return (median(timings) if timings else None), problems


async def series(
    ctx: Context,
    label: str,
    sizes: tuple[int, ...],
    build: Callable[[int], tuple[dict[str, Any], dict[str, Any], Any, int]],
) -> None:
    """Per size: the distributed and the in-process cost per unit; then the flatness ratio."""
    unit = f"ms/{label.split()[0]}"
    per_unit: list[float | None] = []
    problems: list[str] = []
    for size in sizes:
        graph, input_data, expected, units = build(size)
        seconds, wrong = await timed_runs(
            ctx, graph, input_data, expected, repeats(size, sizes[-1])
        )
        problems += wrong
        local = median(local_timings(graph, same(input_data), 3)) * 1000 / units
        if seconds is None:  # a size that never completes has no cost to compare
            per_unit.append(None)
            ctx.report.add(
                Figure(S, f"{label} {size}", 0, unit, baseline=local, failure=True,
                       note=f"no run completed: {wrong[0]}")
            )  # fmt: skip
            continue
        per_unit.append(seconds * 1000 / units)
        ctx.report.add(
            Figure(S, f"{label} {size}", seconds * 1000 / units, unit, baseline=local,
                   note=f"{seconds * 1000:.0f} ms a run")
        )  # fmt: skip
    first, last = per_unit[0], per_unit[-1]
    ratio = last / first if first and last else 0.0
    ctx.report.add(
        Figure(S, f"{label} {sizes[-1]}/{sizes[0]}", ratio, "x", target=f"<= {FLAT}",
               ok=bool(first and last) and ratio <= FLAT,
               note="" if first and last else "a size did not complete")
    )  # fmt: skip
    lost = len(problems)
    ctx.report.add(
        Figure(S, f"{label} lost or wrong", lost, "runs", target="0", ok=lost == 0,
               failure=lost > 0, note="; ".join(dict.fromkeys(problems))[:300])
    )  # fmt: skip


def same(input_data: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
    """Every run the same input: the cost of a size, not of its data."""
    return lambda _: input_data


def chain_case(length: int) -> tuple[dict[str, Any], dict[str, Any], Any, int]:
    return chain(length), {"text": "x"}, {"result": "x"}, chain_nodes(length)


def loop_case(items: int) -> tuple[dict[str, Any], dict[str, Any], Any, int]:
    graph, input_data = loop(items)
    return graph, input_data, {"count": items}, items


async def run(ctx: Context) -> None:
    await series(ctx, "node chain", ctx.options.chain_lengths, chain_case)
    await series(ctx, "item loop", ctx.options.loop_items, loop_case)
