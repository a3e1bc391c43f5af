"""6. Replay: rebuild the executions read model (`ExecutionList.projection.rebuild()`, what a
rebuild command runs) from 100,000 events in a SQLite store. The events come from runs made
in process (`run_locally`) and saved in batches: the same aggregates the executor stores,
without the HTTP API. Baseline: reading the same notifications alone, without projecting."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from bench.context import Context
from bench.report import Figure
from bench.workflows import five_node, five_node_input
from services.executor.application import ExecutorApplication
from services.executor.local_engine import run_locally
from services.executor.readmodel import ExecutionList
from services.executor.settings import ExecutorSettings
from shared.readmodel import read_model_engine, read_model_metadata

S = "replay"
TARGET = 50_000.0
SECRET = "bench-replay-" + "x" * 40  # never used: nothing is signed here
SAVE_BATCH = 100  # executions per save: one transaction


def fill(app: ExecutorApplication, events: int) -> float:
    """Store at least `events` events; return the store's events per second while saving."""
    graph = five_node()
    stored, i, saving = 0, 0, 0.0
    while stored < events:
        batch = [run_locally(graph, five_node_input(i + k)) for k in range(SAVE_BATCH)]
        i += SAVE_BATCH
        started = time.perf_counter()
        app.save(*batch)
        saving += time.perf_counter() - started
        stored = app.recorder.max_notification_id() or 0
    return stored / saving


def read_all(app: ExecutorApplication, batch: int = 1000) -> int:
    position, count = 0, 0
    while notifications := app.recorder.select_notifications(
        position, batch, inclusive_of_start=False
    ):
        count += len(notifications)
        position = notifications[-1].id
    return count


def measure(events: int, data_dir: Path) -> dict[str, float]:
    settings = ExecutorSettings(jwt_secret=SECRET, store="sqlite", data_dir=data_dir)
    app = ExecutorApplication(settings)
    engine = read_model_engine(settings)
    try:
        store_rate = fill(app, events)
        started = time.perf_counter()
        read = read_all(app)
        read_rate = read / (time.perf_counter() - started)
        executions = ExecutionList(app, engine, read_model_metadata(settings))
        executions.projection.create_tables()
        started = time.perf_counter()
        applied = executions.projection.rebuild()
        elapsed = time.perf_counter() - started
    finally:
        engine.dispose()
        app.close()
    return {
        "applied": applied,
        "rate": applied / elapsed,
        "read": read_rate,
        "store": store_rate,
        "seconds": elapsed,
    }


async def run(ctx: Context) -> None:
    with tempfile.TemporaryDirectory(dir=ctx.options.workdir) as tmp:
        found = await asyncio.to_thread(measure, ctx.options.replay_events, Path(tmp))
    ctx.report.add(
        Figure(
            S,
            "rebuild",
            found["rate"],
            "events/s",
            target=f">= {TARGET:,.0f}",
            ok=found["rate"] >= TARGET,
            baseline=found["read"],
            note=f"{found['applied']:,.0f} events in {found['seconds']:.1f} s",
        )
    )
    ctx.report.add(
        Figure(S, "store while filling", found["store"], "events/s", note="batches of 100 runs")
    )
