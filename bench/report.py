"""Figures, their targets and pass/miss marks; the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    scenario: str
    metric: str
    value: float
    unit: str
    target: str = ""  # as printed, e.g. ">= 250"
    ok: bool | None = None  # None: no target
    # The same work without the distribution (local_engine in one process; see the notes).
    baseline: float | None = None
    note: str = ""
    failure: bool = False  # lost or wrong work: a failure, not merely a missed target

    @property
    def mark(self) -> str:
        if self.failure:
            return "FAIL"
        if self.ok is None:
            return ""
        return "pass" if self.ok else "MISS"


@dataclass
class Report:
    settings: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(f"  {format_row(figure)}", flush=True)
        return figure

    def table(self) -> str:
        header = ("scenario", "metric", "value", "baseline", "ratio", "target", "")
        rows = [header] + [row(f) for f in self.figures]
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines + [f"note: {n}" for n in self.notes])

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "settings": self.settings,
            "machine": machine(),
            "figures": [{**asdict(f), "mark": f.mark} for f in self.figures],
            "notes": self.notes,
        }
        path.write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def row(f: Figure) -> tuple[str, ...]:
    ratio = ""
    if f.baseline:
        ratio = f"{f.value / f.baseline:.3g}x"
    value = number(f.value, f.unit) + (f" ({f.note})" if f.note else "")
    return (f.scenario, f.metric, value, number(f.baseline, f.unit), ratio, f.target, f.mark)


def format_row(f: Figure) -> str:
    return " | ".join(c for c in row(f) if c)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def machine() -> dict[str, Any]:
    model = ""
    memory_mb = 0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_mb = int(line.split()[1]) // 1024
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_mb": memory_mb,
        "python": platform.python_version(),
    }
