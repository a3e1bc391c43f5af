"""9. Peer: the same workflow on n8n and on this platform, one right after the other, driven
by the same clients for the same time: start → condition `value > 10` → an LLM call (`yes N`
or `no N`, answered at once by the same fake provider) → end, at 1 and at 32 clients, each
client waiting for the end of its run. n8n answers its webhook when the last node ended; here
a client starts a run over HTTP and follows it on the WebSocket, as the throughput
scenario's clients do. Skipped, saying how to install it, when n8n is not installed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from bench.client import (
    Drive,
    Outcome,
    RunOne,
    api_client,
    create_workflow,
    drive_runs,
    http_client,
    run_and_follow,
)
from bench.context import Context, DriverCpu
from bench.cpu import TreeCpu, per_run_ms, platform_per_run
from bench.n8n import WEBHOOK, N8nInstall, answer, n8n_home, running_n8n
from bench.platform import Platform, PlatformCpu, PlatformOptions, fake_llm, running_platform
from bench.report import Figure, percentile
from bench.workflows import edge, node

S = "peer"
CLIENTS = (1, 32)
RATIO_TARGET = 5.0  # ours / n8n at 32 clients
SEQUENTIAL_P50_MS = 15.0
THRESHOLD = 10


class CpuMeter(Protocol):
    """CPU seconds by process over a `with` block: PlatformCpu, TreeCpu."""

    used: dict[str, float]

    def __enter__(self) -> CpuMeter: ...
    def __exit__(self, *_: object) -> None: ...


@dataclass
class Side:
    """One product under test: how a client makes one run, and what its CPU costs."""

    name: str  # "n8n" or "ours"
    run_one: RunOne
    cpu: CpuMeter  # measured over the highest level
    cpu_figures: Callable[[str, int], list[Figure]]  # (scenario, completed runs)


def value_of(index: int) -> int:
    return index % (2 * THRESHOLD + 1)  # 0..20: runs take either branch


def expected_answer(index: int) -> str:
    value = value_of(index)
    return f"ECHO: {'yes' if value > THRESHOLD else 'no'} {value}"


def branch_llm() -> dict[str, Any]:
    """Our side of n8n's branch-llm.json: start → condition → llm yes / llm no → end."""

    def llm(node_id: str, word: str) -> dict[str, Any]:
        return node(node_id, "llm", provider="deepseek", model="deepseek-chat",
                    prompt=f"{word} {{input.value}}", stream=False)  # fmt: skip

    return {
        "name": "bench branch llm (n8n's peer workflow)",
        "nodes": [
            node("start-1", "start"),
            node("c-1", "condition", expression=f"{{input.value}} > {THRESHOLD}"),
            llm("llm-yes", "yes"),
            llm("llm-no", "no"),
            node("end-1", "end", output={"answer": "{value}"}),
        ],
        "edges": [
            edge("start-1", "c-1"),
            edge("c-1", "llm-yes", "true"),
            edge("c-1", "llm-no", "false"),
            edge("llm-yes", "end-1"),
            edge("llm-no", "end-1"),
        ],
    }


async def run(ctx: Context) -> None:
    o = ctx.options
    install = N8nInstall(n8n_home())
    reason = install.missing()
    if reason is not None:
        message = (
            f"{S}: skipped: {reason}. Install it with `{install.install_command()}` "
            "(about 5 min, 2.8 GB), or point N8N_HOME at an install."
        )
        print(f"  {message}", flush=True)
        ctx.report.notes.append(message)
        return
    ctx.report.notes.append(
        f"{S}: n8n from {install.home} and this platform, one after the other, same fake LLM, "
        f"same clients, {o.duration_s:g} s per level after a warm-up"
    )
    rates: dict[str, dict[int, float]] = {}
    # The provider knows no key: n8n's HTTP Request node sends none.
    with fake_llm(o.workdir, api_key=None) as llm:
        async with (
            running_n8n(install, o.workdir / "n8n", llm.base_url) as n8n,
            http_client(n8n.base_url, 2 * max(CLIENTS)) as client,
        ):
            tree = TreeCpu(n8n.pid, "n8n")
            theirs = Side("n8n", n8n_run(client), tree, lambda s, runs: [n8n_cpu(s, tree, runs)])
            rates["n8n"] = await measure(ctx, theirs)
        options = PlatformOptions(o.workdir, o.postgres, o.workers, llm=llm)
        with running_platform(options, "peer") as platform:
            async with api_client(platform, 2 * max(CLIENTS)) as api:
                workflow_id = await create_workflow(api, branch_llm())
                used = PlatformCpu(platform)
                ours = Side(
                    "ours",
                    our_run(platform, api, workflow_id),
                    used,
                    lambda s, runs: platform_per_run(s, used.used, runs),
                )
                rates["ours"] = await measure(ctx, ours)
    for clients in CLIENTS:
        n8n_rate, our_rate = rates["n8n"][clients], rates["ours"][clients]
        ratio = our_rate / n8n_rate if n8n_rate else 0.0
        target = clients == max(CLIENTS)
        ctx.report.add(
            Figure(
                S,
                f"ours/n8n c={clients}",
                ratio,
                "x",
                target=f">= {RATIO_TARGET:g}" if target else "",
                ok=ratio >= RATIO_TARGET if target else None,
                note=f"{our_rate:.1f} / {n8n_rate:.1f} runs/s",
            )
        )


def n8n_run(client: httpx.AsyncClient) -> RunOne:
    """One n8n run: POST the webhook, which answers when the last node ended."""

    async def one(index: int) -> Outcome:
        started = time.perf_counter()
        try:
            response = await client.post(WEBHOOK, json={"value": value_of(index)})
        except httpx.HTTPError as exc:
            return Outcome(index, None, 0.0, f"error: {type(exc).__name__}: {exc}"[:200])
        now = time.perf_counter()
        if response.status_code != 200:
            return Outcome(index, None, 0.0, f"error: HTTP {response.status_code}")
        outcome = Outcome(index, None, now - started, "completed", None, now)
        return checked(outcome, answer_text(response), expected_answer(index))

    return one


def our_run(platform: Platform, api: httpx.AsyncClient, workflow_id: str) -> RunOne:
    """One run here: POST execute, then follow it on the WebSocket to its end."""

    async def one(index: int) -> Outcome:
        input_data = {"value": value_of(index)}
        outcome = await run_and_follow(platform, api, workflow_id, input_data, index)
        return checked(outcome, outcome.output_data, {"answer": expected_answer(index)})

    return one


def answer_text(response: httpx.Response) -> Any:
    """The LLM's text in n8n's answer, else what n8n answered."""
    try:
        return answer(response)["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return response.text[:200]


def checked(outcome: Outcome, got: Any, expected: Any) -> Outcome:
    """The outcome, marked wrong when a completed run's answer is not the expected one."""
    if outcome.final == "completed" and got != expected:
        outcome.final = f"wrong answer: {got!r}"[:200]
    outcome.output_data = got
    return outcome


async def measure(ctx: Context, side: Side) -> dict[int, float]:
    """A warm-up, then each level of CLIENTS for the same time; figures for each, and the
    CPU per run at the highest. Returns completed runs per second by level."""
    duration = ctx.options.duration_s
    # Unmeasured: connections opened, caches and JITs warm, on either side alike.
    await drive_runs(side.run_one, max(CLIENTS), duration_s=min(2.0, duration / 2))
    rates: dict[int, float] = {}
    for clients in CLIENTS:
        scenario = f"{S} {side.name} c={clients}"
        with DriverCpu() as driver, side.cpu:
            result = await drive_runs(side.run_one, clients, duration_s=duration)
        rates[clients] = report_level(ctx, scenario, side.name, clients, result)
        if clients == max(CLIENTS):
            ctx.report.add(driver.figure(scenario))
            for figure in side.cpu_figures(scenario, len(result.latencies())):
                ctx.report.add(figure)
    return rates


def n8n_cpu(scenario: str, tree: TreeCpu, runs: int) -> Figure:
    return Figure(
        scenario,
        "n8n CPU per run",
        per_run_ms(sum(tree.used.values()), runs) if runs else 0.0,
        "ms",
        note=f"node process tree of {tree.processes} processes, {runs} runs"
        if runs
        else "no run completed",
    )


def report_level(ctx: Context, scenario: str, side: str, clients: int, result: Drive) -> float:
    latencies = [s * 1000 for s in result.latencies()]
    rate = len(latencies) / result.elapsed_s if result.elapsed_s else 0.0
    wrong = result.errors()
    ctx.report.add(
        Figure(scenario, "completed/s", rate, "runs/s",
               note=f"{len(result.outcomes)} runs in {result.elapsed_s:.1f} s")
    )  # fmt: skip
    p50 = percentile(latencies, 50)
    sequential_ours = side == "ours" and clients == 1
    ctx.report.add(
        Figure(
            scenario,
            "latency p50",
            p50,
            "ms",
            target=f"<= {SEQUENTIAL_P50_MS:g}" if sequential_ours else "",
            ok=bool(latencies) and p50 <= SEQUENTIAL_P50_MS if sequential_ours else None,
        )
    )
    ctx.report.add(Figure(scenario, "latency p99", percentile(latencies, 99), "ms"))
    ctx.report.add(
        Figure(
            scenario,
            "lost or wrong",
            len(wrong),
            "runs",
            target="0",
            ok=not wrong,
            failure=bool(wrong) and side == "ours",  # n8n's own errors are its figure, not ours
            note="; ".join(dict.fromkeys(wrong))[:300],
        )
    )
    return rate
