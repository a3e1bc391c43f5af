"""7. Memory: resident memory of every process of a fresh platform, idle, then after half
and after all of the runs (10,000 five-node runs): none above 200 MB, none still growing."""

from __future__ import annotations

import asyncio
from typing import Any

from bench.client import api_client, create_workflow, drive
from bench.context import Context
from bench.platform import Platform, PlatformOptions, rss_mb, running_platform
from bench.report import Figure
from bench.workflows import five_node, five_node_input, five_node_output

S = "memory"
LIMIT_MB = 200.0
GROWTH, GROWTH_SLACK_MB = 0.05, 2.0  # "no growth": within 5%, or 2 MB for small processes


def sample(platform: Platform) -> dict[str, float]:
    return {name: rss_mb(pid) for name, pid in platform.processes().items()}


async def run(ctx: Context) -> None:
    o = ctx.options
    options = PlatformOptions(o.workdir, o.postgres, o.workers)
    with running_platform(options, "memory") as platform:
        await asyncio.sleep(2)  # let start-up settle
        idle = sample(platform)
        async with api_client(platform, 2 * o.memory_clients) as api:
            workflow_id = await create_workflow(api, five_node())
            # The second half runs as many as the first did: on a slow platform the first
            # half stops at its time budget, and the comparison stays like for like.
            half = o.memory_runs // 2
            samples: list[dict[str, float]] = []
            problems: list[str] = []
            done = 0
            for offset in (0, half):

                def numbered(i: int, offset: int = offset) -> dict[str, Any]:
                    return five_node_input(offset + i)

                budget = o.memory_budget_s if offset == 0 else None
                result = await drive(
                    platform,
                    api,
                    workflow_id,
                    o.memory_clients,
                    numbered,
                    count=half,
                    duration_s=budget,
                )
                half = min(half, len(result.outcomes))
                done += len(result.outcomes)
                problems += [
                    x.final if x.final != "completed" else f"output {x.output_data!r}"
                    for x in result.outcomes
                    if x.final != "completed" or x.output_data != five_node_output(offset + x.index)
                ]
                samples.append(sample(platform))
    middle, end = samples
    for name, rss in end.items():
        grown = rss - middle[name]
        still_growing = grown > max(GROWTH * middle[name], GROWTH_SLACK_MB)
        ctx.report.add(
            Figure(
                S,
                f"{name} RSS",
                rss,
                "MB",
                target=f"<= {LIMIT_MB:g}, no growth",
                ok=rss <= LIMIT_MB and not still_growing,
                note=f"idle {idle.get(name, 0):.0f}, at {half}: {middle[name]:.0f}, "
                f"{grown:+.1f} since",
            )
        )
    wrong = len(problems)
    why = "; ".join(dict.fromkeys(problems))[:300]
    ctx.report.add(
        Figure(S, "lost or wrong", wrong, "runs", target="0", ok=wrong == 0,
               failure=wrong > 0, note=f"of {done} runs" + (f": {why}" if why else ""))
    )  # fmt: skip
