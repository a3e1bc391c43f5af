"""What `agentflow-audit` prints: tables (rich) for people, JSON for programs, and a progress
bar on stderr while a replay reads (only when stderr is a terminal, so logs stay clean)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from services.audit.replay import Progress as ProgressCallback

# Piped into a file, a table would otherwise be cut to 80 columns, wrapping every id.
_PIPED_WIDTH = 240


def stdout_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, width=_PIPED_WIDTH)
    return console


@contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """A callback `(done, total)` drawing a bar on stderr while the block runs."""
    console = Console(stderr=True)
    # Output lines go above the bar only when stdout is the same terminal; piped output must
    # never be routed to stderr.
    same_terminal = console.is_terminal and sys.stdout.isatty()
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
        redirect_stdout=same_terminal,
        redirect_stderr=False,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=max(total, done))

    with bar:
        yield update


class RecordPrinter:
    """Replayed records as JSON lines (printed as they come) or one table (at the end)."""

    def __init__(self, fmt: str, title: str, out: TextIO | None = None) -> None:
        self._fmt = fmt
        self._out = out
        self._table = Table(
            "position", "time", "type", "aggregate id", "version", title=title, box=box.SIMPLE
        )
        self.count = 0

    def __call__(self, position: int, record: dict[str, Any]) -> None:
        self.count += 1
        if self._fmt in ("jsonl", "json"):
            out = self._out or sys.stdout
            out.write(json.dumps({"position": position, **record}, ensure_ascii=False) + "\n")
            return
        when = str(record.get("timestamp") or record.get("occurred_at", ""))
        self._table.add_row(
            str(position),
            when,
            str(record.get("type", "")),
            str(record.get("aggregate_id", "")),
            str(record.get("version", "")),
        )

    def finish(self) -> None:
        if self._fmt == "table":
            self._table.caption = f"{self.count} events"
            stdout_console().print(self._table)


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def history_tables(
    records: Sequence[dict[str, Any]], state: dict[str, Any], at: int | None
) -> None:
    console = stdout_console()
    aggregate_id = records[0]["aggregate_id"] if records else state.get("aggregate_id", "")
    events = Table("version", "time", "type", title=f"events of {aggregate_id}", box=box.SIMPLE)
    events.add_column("data", overflow="fold")  # all of it, wrapped: nothing is cut
    for record in records:
        events.add_row(
            str(record["version"]), record["timestamp"], record["type"], compact(record["data"])
        )
    console.print(events)
    which = f"version {state.get('version')}" if at is not None else "now"
    fields = Table("field", title=f"{state.get('type', '')} at {which}", box=box.SIMPLE)
    fields.add_column("value", overflow="fold")
    for name, value in (state.get("state") or {}).items():
        fields.add_row(name, compact(value))
    console.print(fields)


def verify_table(report: dict[str, Any]) -> None:
    console = stdout_console()
    ok = not (report["missing"] or report["duplicates"] or report["unknown"])
    table = Table(
        "check",
        "events",
        title=f"verify {report['service']}",
        caption="OK" if ok else "FAILED",
        box=box.SIMPLE,
    )
    table.add_row("stored, to be published", str(report["stored_publishable"]))
    table.add_row(f"published by {report['service']}", str(report["published"]))
    table.add_row("missing from the stream", str(report["missing"]))
    table.add_row("published more than once", str(report["duplicates"]))
    table.add_row("published, never stored", str(report["unknown"]))
    table.add_row("stream read up to sequence", str(report["stream_last_sequence"]))
    console.print(table)
    examples = [(kind, m) for kind, ids in report["examples"].items() for m in ids]
    if examples:
        listing = Table("problem", "Nats-Msg-Id", title="examples", box=box.SIMPLE)
        for kind, message_id in examples:
            listing.add_row(kind, message_id)
        console.print(listing)


def rebuild_table(report: dict[str, Any]) -> None:
    table = Table(
        "",
        "",
        title=f"rebuild-check {report['service']}",
        caption="OK: equal" if report["equal"] else "FAILED: they differ",
        box=box.SIMPLE,
        show_header=False,
    )
    table.add_row("events replayed", str(report["events_replayed"]))
    table.add_row("rows in the live read model", str(report["rows"]))
    table.add_row("rows rebuilt", str(report["rebuilt_rows"]))
    table.add_row("equal", "yes" if report["equal"] else "no")
    if report["differing_ids"]:
        table.add_row("first differing ids", ", ".join(map(str, report["differing_ids"])))
    stdout_console().print(table)


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))
