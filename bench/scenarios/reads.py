"""5. Read paths: the workflow and execution lists at 32 concurrent clients through the
gateway; the baseline is the same request straight to the service, without the gateway."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import httpx

from bench.client import KEEPALIVE_S, E, W
from bench.context import Context, DriverCpu
from bench.report import Figure, percentile

S = "reads"
RPS, P99_MS = 1000.0, 50.0


async def hammer(
    base_url: str, token: str, path: str, clients: int, duration_s: float
) -> tuple[float, float, int]:
    """Requests per second, p99 in ms, and how many answers were not 200."""
    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=KEEPALIVE_S
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as http:
        await http.get(path)  # connect and warm the caches
        deadline = time.perf_counter() + duration_s
        started = time.perf_counter()

        async def client() -> None:
            nonlocal failed
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await http.get(path)
                latencies.append((time.perf_counter() - sent) * 1000)
                failed += response.status_code != 200

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 99), failed


def _ms(text: str) -> float:
    """wrk's latency figure ("812.00us", "4.21ms", "1.02s") in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"wrk printed an unknown latency {text!r}")
    value, unit = float(match[1]), match[2]
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


async def hammer_with_wrk(
    wrk: str, base_url: str, token: str, path: str, clients: int, duration_s: float
) -> tuple[float, float, int]:
    """The same figures measured by wrk: a C client costs the platform's cores far less than
    an asyncio one, so the figure is the platform's and not the driver's."""
    process = await asyncio.create_subprocess_exec(
        wrk, "-t2", f"-c{clients}", f"-d{max(1, round(duration_s))}s", "--latency",
        "-H", f"Authorization: Bearer {token}", base_url + path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    text = out.decode()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1])  # type: ignore[index]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE)[1])  # type: ignore[index]
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    return rps, p99, int(non_2xx[1]) if non_2xx else 0


async def measure(base_url: str, token: str, path: str, ctx: Context) -> tuple[float, float, int]:
    """Requests per second, p99 in ms and answers not 200, by wrk when installed."""
    clients, duration = ctx.options.read_clients, ctx.options.read_duration_s
    wrk = shutil.which("wrk")
    if wrk:
        return await hammer_with_wrk(wrk, base_url, token, path, clients, duration)
    return await hammer(base_url, token, path, clients, duration)


async def run(ctx: Context) -> None:
    platform, api = ctx.running()
    stack = platform.stack
    clients = ctx.options.read_clients
    for path, service in ((W, stack.workflows), (E, stack.executor)):
        count = len((await api.get(path, params={"limit": 100})).json())
        wrk = shutil.which("wrk")
        with DriverCpu() as cpu:
            rps, p99, failed = await measure(platform.base_url, platform.token, path, ctx)
        direct_rps, direct_p99, _ = await measure(service.base_url, platform.token, path, ctx)
        scenario = f"{S} GET {path}"
        ctx.report.add(
            Figure(
                scenario,
                "requests/s",
                rps,
                "rps",
                target=f">= {RPS:g}",
                ok=rps >= RPS,
                baseline=direct_rps,
                note=f"{clients} clients, {count} items a page, driver: "
                + ("wrk" if wrk else "httpx (install wrk for a lighter driver)"),
            )
        )
        ctx.report.add(
            Figure(
                scenario,
                "p99",
                p99,
                "ms",
                target=f"< {P99_MS:g}",
                ok=p99 < P99_MS,
                baseline=direct_p99,
            )
        )
        ctx.report.add(
            Figure(
                scenario,
                "not 200",
                failed,
                "answers",
                target="0",
                ok=failed == 0,
                failure=failed > 0,
            )
        )
        ctx.report.add(cpu.figure(scenario))
