"""Figures a suite measured (faults injected, lost runs, recovery times, cases fuzzed), printed
at the end of the pytest run: `make test` shows the short suites' figures, `make chaos` and
`make security` the long ones'. Figures are reported, never asserted on for speed.

A pytest plugin, loaded by the root conftest. A test records with the `figures` fixture:

    def test_x(figures: Figures) -> None:
        figures.record("chaos", "lost executions", 0)
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

# `make chaos` / `make security` set this: the same suites, at full size.
LONG = os.environ.get("AGENTFLOW_LONG_SUITES", "") not in ("", "0")


def scale(short: int, long: int) -> int:
    """The size of a suite's workload: small in `make test`, full in the long targets."""
    return long if LONG else short


@dataclass
class Figures:
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))

    def record(self, suite: str, name: str, value: object, unit: str = "") -> None:
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        self.rows[suite].append((name, f"{shown} {unit}".rstrip()))


_FIGURES = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES.rows:
        return
    size = "long" if LONG else "short"
    terminalreporter.section(f"figures ({size} suites)")
    for suite, rows in _FIGURES.rows.items():
        width = max(len(name) for name, _ in rows)
        terminalreporter.write_line(f"[{suite}]")
        for name, value in rows:
            terminalreporter.write_line(f"  {name.ljust(width)}  {value}")
