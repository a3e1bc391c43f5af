"""What a benchmark run measures and how big: the full sizes, or tiny ones (`--quick`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SCENARIOS = (
    "latency", "throughput", "cost", "reads", "llm", "memory", "replay", "outbox", "peer",
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    only: tuple[str, ...]
    postgres: bool
    workers: int
    out: Path
    workdir: Path
    quick: bool
    duration_s: float  # per throughput level
    latency_runs: int
    throughput_clients: tuple[int, ...]
    llm_workers: tuple[int, ...]
    llm_clients: int
    llm_delay_s: float
    llm_worker_concurrency: int
    llm_duration_s: float
    chain_lengths: tuple[int, ...]
    loop_items: tuple[int, ...]
    read_clients: int
    read_duration_s: float
    replay_events: int
    memory_runs: int  # sampled at half and at the end
    memory_clients: int
    memory_budget_s: float | None  # first half at most this long (None: no limit)

    @classmethod
    def build(
        cls,
        *,
        only: tuple[str, ...],
        postgres: bool,
        workers: int,
        out: Path,
        workdir: Path,
        quick: bool,
        duration_s: float | None,
        llm_worker_concurrency: int,
        memory_budget_s: float | None,
    ) -> Options:
        if quick:
            return cls(
                only,
                postgres,
                workers,
                out,
                workdir,
                quick,
                duration_s=duration_s or 1.0,
                latency_runs=5,
                throughput_clients=(4, 16),
                llm_workers=(1, 2),
                llm_clients=8,
                llm_delay_s=0.05,
                llm_worker_concurrency=llm_worker_concurrency,
                llm_duration_s=1.0,
                chain_lengths=(3, 10),
                loop_items=(3, 10),
                read_clients=4,
                read_duration_s=0.5,
                replay_events=2000,
                memory_runs=40,
                memory_clients=8,
                memory_budget_s=memory_budget_s,
            )
        return cls(
            only,
            postgres,
            workers,
            out,
            workdir,
            quick,
            duration_s=duration_s or 10.0,
            latency_runs=200,
            throughput_clients=(16, 64, 256),
            llm_workers=(1, 2, 4),
            llm_clients=64,
            llm_delay_s=0.2,
            llm_worker_concurrency=llm_worker_concurrency,
            llm_duration_s=10.0,
            chain_lengths=(10, 50, 200),
            loop_items=(10, 100, 1000),
            read_clients=32,
            read_duration_s=5.0,
            replay_events=100_000,
            memory_runs=10_000,
            memory_clients=64,
            memory_budget_s=memory_budget_s,
        )
