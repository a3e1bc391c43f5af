"""2. Throughput: the five-node workflow at 16, 64 and 256 concurrent clients for a fixed
time; afterwards every run started is fetched and checked (status and output). The platform's
CPU per completed run is given at every level, each process's and the target at 16."""

from __future__ import annotations

import statistics

from bench.client import create_workflow, drive, verify
from bench.context import Context, DriverCpu
from bench.cpu import platform_per_run
from bench.platform import PlatformCpu
from bench.report import Figure, percentile
from bench.scenarios.baseline import local_timings
from bench.workflows import five_node, five_node_input, five_node_output

S = "throughput"
TARGET = 250.0
CPU_LEVEL = 16  # clients: where the CPU per run target applies (issue 15)


async def run(ctx: Context) -> None:
    platform, api = ctx.running()
    workflow_id = await create_workflow(api, five_node())
    local_rate = 1 / statistics.mean(local_timings(five_node(), five_node_input, 200))
    for clients in ctx.options.throughput_clients:
        scenario = f"{S} c={clients}"
        with DriverCpu() as cpu, PlatformCpu(platform) as used:
            result = await drive(
                platform,
                api,
                workflow_id,
                clients,
                five_node_input,
                duration_s=ctx.options.duration_s,
            )
        problems = await verify(api, result, five_node_output)
        latencies = [s * 1000 for s in result.latencies()]
        rate = len(latencies) / result.elapsed_s
        lost = len(problems)
        ctx.report.add(
            Figure(
                scenario,
                "completed/s",
                rate,
                "exec/s",
                target=f">= {TARGET:g}, none lost",
                ok=rate >= TARGET and lost == 0,
                baseline=local_rate,
                note=f"{len(result.outcomes)} runs in {result.elapsed_s:.1f} s",
            )
        )
        ctx.report.add(Figure(scenario, "latency p50", percentile(latencies, 50), "ms"))
        ctx.report.add(Figure(scenario, "latency p99", percentile(latencies, 99), "ms"))
        ctx.report.add(
            Figure(
                scenario,
                "lost or wrong",
                lost,
                "runs",
                target="0",
                ok=lost == 0,
                failure=lost > 0,
                note="; ".join(problems[:3]),
            )
        )
        ctx.report.add(cpu.figure(scenario))
        ctx.report.add(
            Figure(
                scenario,
                "platform CPU",
                sum(used.used.values()),
                "s",
                note=f"cores: {used.summary()}",
            )
        )
        for figure in platform_per_run(
            scenario, used.used, len(latencies), with_target=clients == CPU_LEVEL
        ):
            ctx.report.add(figure)
