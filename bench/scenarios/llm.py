"""3. LLM-bound runs: two llm nodes answered by the fake provider after a delay, with 1, 2
and 4 workers (added to one running platform). Enough clients wait that the workers'
concurrency, not the clients, is the limit."""

from __future__ import annotations

import asyncio

from bench.client import api_client, create_workflow, drive
from bench.context import Context, DriverCpu
from bench.platform import PlatformOptions, fake_llm, running_platform
from bench.report import Figure
from bench.workflows import five_node_input, llm_pair, llm_pair_output

S = "llm"
SCALING = 1.8


async def run(ctx: Context) -> None:
    o = ctx.options
    slots = o.llm_worker_concurrency
    # Each run holds one worker slot for `delay` per llm node, two nodes in a row: a worker
    # finishes at most slots / (2 * delay) runs a second.
    ceiling = slots / (2 * o.llm_delay_s)
    ctx.report.notes.append(
        f"llm: {o.llm_clients} clients, {slots} nodes at once per worker "
        f"(AGENTFLOW_WORKER_CONCURRENCY), answers after {o.llm_delay_s * 1000:.0f} ms; "
        f"ideal {ceiling:.0f} runs/s per worker"
    )
    with fake_llm(o.workdir) as server:
        options = PlatformOptions(
            o.workdir, o.postgres, workers=1, worker_concurrency=slots, llm=server
        )
        with running_platform(options, "llm") as platform:
            async with api_client(platform, 2 * o.llm_clients) as api:
                workflow_id = await create_workflow(api, llm_pair(o.llm_delay_s))
                rates: dict[int, float] = {}
                for workers in o.llm_workers:
                    while len(platform.stack.workers) < workers:
                        await asyncio.to_thread(platform.add_worker)
                    # A short unmeasured run lets new workers connect and take their share.
                    await drive(
                        platform,
                        api,
                        workflow_id,
                        o.llm_clients,
                        five_node_input,
                        duration_s=min(2.0, o.llm_duration_s / 2),
                    )
                    with DriverCpu() as cpu:
                        result = await drive(
                            platform,
                            api,
                            workflow_id,
                            o.llm_clients,
                            five_node_input,
                            duration_s=o.llm_duration_s,
                        )
                    wrong = [
                        x
                        for x in result.outcomes
                        if x.final != "completed" or x.output_data != llm_pair_output(x.index)
                    ]
                    rates[workers] = len(result.outcomes) / result.elapsed_s
                    scenario = f"{S} {workers}w"
                    ctx.report.add(
                        Figure(
                            scenario,
                            "completed/s",
                            rates[workers],
                            "exec/s",
                            note=f"ideal {ceiling * workers:.0f}",
                        )
                    )
                    ctx.report.add(
                        Figure(
                            scenario,
                            "lost or wrong",
                            len(wrong),
                            "runs",
                            target="0",
                            ok=not wrong,
                            failure=bool(wrong),
                            note="; ".join(x.final for x in wrong[:3]),
                        )
                    )
                    ctx.report.add(cpu.figure(scenario))
    base = rates.get(1)
    for workers, rate in rates.items():
        if workers > 1 and base:
            scaled = rate / base
            target = workers == 2  # the target is for two workers; more are shown
            ctx.report.add(
                Figure(
                    S,
                    f"{workers}w/1w",
                    scaled,
                    "x",
                    target=f">= {SCALING}" if target else "",
                    ok=scaled >= SCALING if target else None,
                )
            )
