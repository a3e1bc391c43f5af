"""CPU time per completed run: what one run costs the platform's processes (each, and their
sum), and for comparison what it costs the peer's process tree. Read from /proc/<pid>/stat
(utime + stime) before and after a measured block."""

from __future__ import annotations

import os
from pathlib import Path

from bench.report import Figure

TARGET_MS = 10.0  # issue 15: the platform's CPU per run, all processes together
MOONSHOT_MS = 6.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3, `state`, is [0]);
    None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def own_and_reaped_cpu_s(pid: int) -> float:
    """utime + stime of a process, plus cutime + cstime: its children that ended and were
    waited for, whose time would otherwise drop out of a sum over the live tree."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICKS_PER_S


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


class TreeCpu:
    """CPU time a process and its descendants (n8n's node and any task runner it spawns)
    used over a block, as one entry of `used` under `name`."""

    def __init__(self, root: int, name: str) -> None:
        self._root = root
        self._name = name
        self.processes = 0

    def _total(self) -> float:
        tree = process_tree(self._root)
        self.processes = max(self.processes, len(tree))
        return sum(own_and_reaped_cpu_s(pid) for pid in tree)

    def __enter__(self) -> TreeCpu:
        self._before = self._total()
        self.used: dict[str, float] = {}
        return self

    def __exit__(self, *_: object) -> None:
        self.used = {self._name: self._total() - self._before}


def per_run_ms(used_s: float, runs: int) -> float:
    return used_s * 1000 / max(runs, 1)


def platform_per_run(
    scenario: str, used: dict[str, float], runs: int, *, with_target: bool = True
) -> list[Figure]:
    """The platform's CPU per completed run: the sum (against the target when `with_target`)
    and, then, each process, busiest first. `used` is CPU seconds by process over the block
    that completed `runs`."""
    if runs == 0:  # nothing to divide by: the figure says so instead of a huge number
        return [
            Figure(scenario, "platform CPU per run", 0.0, "ms", target=target_text(with_target),
                   ok=False if with_target else None, note="no run completed")
        ]  # fmt: skip
    each = {name: per_run_ms(seconds, runs) for name, seconds in used.items()}
    total = sum(each.values())
    figures = [
        Figure(
            scenario,
            "platform CPU per run",
            total,
            "ms",
            target=target_text(with_target),
            ok=total <= TARGET_MS if with_target else None,
            note=f"{len(each)} processes, {runs} runs",
        )
    ]
    if with_target:
        for name, ms in sorted(each.items(), key=lambda item: -item[1]):
            figures.append(Figure(scenario, f"CPU per run: {name}", ms, "ms"))
    return figures


def target_text(with_target: bool) -> str:
    return f"<= {TARGET_MS:g} (moonshot <= {MOONSHOT_MS:g})" if with_target else ""
