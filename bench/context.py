"""What every scenario is handed: the options, the report, and the running platform."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from bench.options import Options
from bench.platform import Platform
from bench.report import Figure, Report


@dataclass
class Context:
    options: Options
    report: Report
    platform: Platform | None = None
    api: httpx.AsyncClient | None = None

    def running(self) -> tuple[Platform, httpx.AsyncClient]:
        assert self.platform is not None, "no platform started"
        assert self.api is not None
        return self.platform, self.api


class DriverCpu:
    """The benchmark process's own CPU time over a block: on a small machine the driver
    competes with the platform for the same cores, and readers should see how much."""

    def __enter__(self) -> DriverCpu:
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        self.cpu_s = 0.0
        self.share = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu_s = time.process_time() - self._cpu
        self.share = self.cpu_s / max(time.perf_counter() - self._wall, 1e-9)

    def figure(self, scenario: str, metric: str = "driver CPU") -> Figure:
        return Figure(scenario, metric, self.cpu_s, "s", note=f"{self.share:.0%} of one core")
