"""1. Latency: the five-node workflow run one at a time, from POST execute to `completed`."""

from __future__ import annotations

from bench.client import create_workflow, run_and_follow
from bench.context import Context
from bench.report import Figure, percentile
from bench.scenarios.baseline import local_timings
from bench.workflows import five_node, five_node_input, five_node_output

S = "latency"
WARMUP = 5


async def run(ctx: Context) -> None:
    platform, api = ctx.running()
    workflow_id = await create_workflow(api, five_node())
    for i in range(WARMUP):  # first runs pay for connections and caches
        await run_and_follow(platform, api, workflow_id, five_node_input(i))
    latencies: list[float] = []
    problems: list[str] = []
    for i in range(ctx.options.latency_runs):
        outcome = await run_and_follow(platform, api, workflow_id, five_node_input(i), i)
        if outcome.final != "completed" or outcome.output_data != five_node_output(i):
            problems.append(outcome.final)
            continue
        latencies.append(outcome.latency_s * 1000)
    wrong = len(problems)
    local = [t * 1000 for t in local_timings(five_node(), five_node_input, 200)]
    targets = {50: 15.0, 90: None, 99: 50.0}
    runs = f"{len(latencies)} runs"
    for p, limit in targets.items():
        value = percentile(latencies, p)
        ctx.report.add(
            Figure(
                S,
                f"p{p}",
                value,
                "ms",
                target=f"< {limit:g}" if limit else "",
                ok=None if limit is None else value < limit,
                baseline=percentile(local, p),
                note=runs if p == 50 else "",
            )
        )
    ctx.report.add(
        Figure(
            S,
            "lost or wrong",
            wrong,
            "runs",
            target="0",
            ok=wrong == 0,
            failure=wrong > 0,
            note="; ".join(dict.fromkeys(problems))[:300],
        )
    )
