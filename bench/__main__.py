"""`python -m bench` (`make bench`): the platform's benchmark suite (docs/benchmarks.md).

Starts the real platform (nats-server, every service, N workers, the gateway) on SQLite or
PostgreSQL, drives it through the gateway as clients would, prints a table with each figure's
target and pass/miss mark, and writes the figures as JSON. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.client import api_client
from bench.context import Context
from bench.options import SCENARIOS, Options
from bench.platform import PlatformOptions, running_platform
from bench.report import Figure, Report
from bench.scenarios import cost, latency, llm, memory, outbox, peer, reads, replay, throughput
from tests.support.stores import postgres_unavailable_reason

Scenario = Callable[[Context], Awaitable[None]]
# Run in this order on one platform; reads come after throughput so the lists hold data.
ON_SHARED_PLATFORM: dict[str, Scenario] = {
    "latency": latency.run,
    "throughput": throughput.run,
    "cost": cost.run,
    "reads": reads.run,
}
# Each starts what it needs: a platform of its own (per worker count, or fresh for memory),
# or none at all.
ON_THEIR_OWN: dict[str, Scenario] = {
    "llm": llm.run,
    "memory": memory.run,
    "replay": replay.run,
    "outbox": outbox.run,
    # n8n, then a platform of its own with the fake LLM; skipped when n8n is not installed.
    "peer": peer.run,
}


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per throughput level (default 10; --quick 1)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="store on PostgreSQL at 127.0.0.1:5432 (a throwaway database)",
    )
    parser.add_argument("--workers", type=int, default=2, help="node workers (default 2)")
    parser.add_argument(
        "--llm-worker-concurrency",
        type=int,
        default=4,
        help="nodes at once per worker in the llm scenario (default 4: low enough that the "
        "workers, not the platform, are the limit, so scaling by workers shows)",
    )
    parser.add_argument(
        "--memory-budget",
        type=float,
        default=None,
        help="memory: seconds at most for the first 5,000 runs; the second "
        "half runs as many as the first did (default: no limit, all 10,000 runs)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/results.json"))
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.postgres and (reason := postgres_unavailable_reason()):
        parser.error(reason)
    workdir = args.out.parent / "work"
    return Options.build(
        only=only,
        postgres=args.postgres,
        workers=args.workers,
        out=args.out,
        workdir=workdir,
        quick=args.quick,
        duration_s=args.duration,
        llm_worker_concurrency=args.llm_worker_concurrency,
        memory_budget_s=args.memory_budget,
    )


async def run_all(options: Options, report: Report) -> None:
    ctx = Context(options, report)
    shared = [name for name in ON_SHARED_PLATFORM if name in options.only]
    if shared:
        platform_options = PlatformOptions(options.workdir, options.postgres, options.workers)
        print(f"starting the platform ({options.workers} workers)...", flush=True)
        with running_platform(platform_options, "shared") as platform:
            async with api_client(platform, 600) as api:
                ctx.platform, ctx.api = platform, api
                for name in shared:
                    await step(name, ON_SHARED_PLATFORM[name], ctx)
        ctx.platform = ctx.api = None
    for name, scenario in ON_THEIR_OWN.items():
        if name in options.only:
            await step(name, scenario, ctx)


async def step(name: str, scenario: Scenario, ctx: Context) -> None:
    print(f"{name}...", flush=True)
    started = time.perf_counter()
    try:
        await scenario(ctx)
    except Exception as exc:  # one scenario's crash is reported; the others still run
        traceback.print_exc()
        ctx.report.add(
            Figure(name, "crashed", 1, "", target="0", ok=False, failure=True,
                   note=f"{type(exc).__name__}: {exc}"[:300])
        )  # fmt: skip
    print(f"{name}: {time.perf_counter() - started:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    options.workdir.mkdir(parents=True, exist_ok=True)
    settings = {
        "store": "postgres" if options.postgres else "sqlite",
        "workers": options.workers,
        "quick": options.quick,
        "duration_s": options.duration_s,
        "scenarios": list(options.only),
    }
    report = Report(settings)
    report.notes.append(
        "baseline: the same graph by local_engine.run_locally in one process (reads: the "
        "service itself, without the gateway; replay: reading the notifications alone)"
    )
    started = time.perf_counter()
    # Each run's stacks live under a directory of their own, removed afterwards.
    with tempfile.TemporaryDirectory(dir=options.workdir) as tmp:
        options = Options(**{**options.__dict__, "workdir": Path(tmp)})
        asyncio.run(run_all(options, report))
    report.notes.append(f"whole run {time.perf_counter() - started:.0f} s")
    print()
    print(report.table())
    report.write_json(options.out)
    print(f"\nresults: {options.out}")
    return 1 if any(f.failure for f in report.figures) else 0


if __name__ == "__main__":
    sys.exit(main())
