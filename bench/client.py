"""Clients of the gateway, as a browser would be: start a run over HTTP, follow it on the
WebSocket to its final message. One asyncio loop drives every client."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect

from bench.platform import Platform

W = "/api/v1/workflows"
E = "/api/v1/executions"
FINAL = {"completed", "failed", "cancelled"}
FOLLOW_TIMEOUT_S = 120.0
KEEPALIVE_S = 2.0  # one run followed longer than this counts as lost


@dataclass
class Outcome:
    index: int
    execution_id: str | None
    latency_s: float
    final: str  # completed / failed / cancelled / error: ...
    output_data: Any = None
    finished_at: float = 0.0


# One run by one client, from its start to its end: `index` numbers the runs of a drive.
RunOne = Callable[[int], Awaitable[Outcome]]


@dataclass
class Drive:
    """What a set of clients did: every run they started and how each one ended."""

    outcomes: list[Outcome] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def started_ids(self) -> list[str]:
        return [o.execution_id for o in self.outcomes if o.execution_id is not None]

    def latencies(self) -> list[float]:
        return [o.latency_s for o in self.outcomes if o.final == "completed"]

    def errors(self) -> list[str]:
        return [o.final for o in self.outcomes if o.final != "completed"]


def api_client(platform: Platform, connections: int = 64) -> httpx.AsyncClient:
    return http_client(
        platform.base_url, connections, {"Authorization": f"Bearer {platform.token}"}
    )


def http_client(
    base_url: str, connections: int, headers: dict[str, str] | None = None
) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        # Below uvicorn's (and Node's) 5 s keep-alive: reusing a connection the server is
        # closing just then fails the request (ReadError), which is the driver's fault.
        keepalive_expiry=KEEPALIVE_S,
    )
    return httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=httpx.Timeout(60.0), limits=limits
    )


async def create_workflow(api: httpx.AsyncClient, graph: dict[str, Any]) -> str:
    response = await api.post(W, json=graph)
    response.raise_for_status()
    return str(response.json()["id"])


async def run_and_follow(
    platform: Platform, api: httpx.AsyncClient, workflow_id: str, input_data: Any, index: int = 0
) -> Outcome:
    """POST execute, then open the socket at once (it sends the current state first, so a
    run that already ended is seen too), and wait for the final message."""
    started = time.perf_counter()
    execution_id: str | None = None
    try:
        response = await api.post(f"{W}/{workflow_id}/execute", json={"input_data": input_data})
        if response.status_code != 201:
            return Outcome(index, None, 0.0, f"error: HTTP {response.status_code}")
        execution_id = str(response.json()["id"])
        url = f"{platform.ws_url}/api/v1/ws/executions/{execution_id}?token={platform.token}"
        async with asyncio.timeout(FOLLOW_TIMEOUT_S), connect(url, open_timeout=30) as socket:
            async for raw in socket:
                message = json.loads(raw)
                if message["type"] in FINAL:
                    now = time.perf_counter()
                    data = message["data"]
                    return Outcome(
                        index,
                        execution_id,
                        now - started,
                        message["type"],
                        data.get("output_data"),
                        now,
                    )
        return Outcome(index, execution_id, 0.0, "error: socket closed before the end")
    except Exception as exc:  # a client reports what went wrong; it never stops the run
        return Outcome(index, execution_id, 0.0, f"error: {type(exc).__name__}: {exc}"[:200])


async def drive(
    platform: Platform,
    api: httpx.AsyncClient,
    workflow_id: str,
    clients: int,
    make_input: Callable[[int], Any],
    *,
    duration_s: float | None = None,
    count: int | None = None,
) -> Drive:
    """`clients` concurrent clients of the platform, each starting a run and following it on
    the WebSocket to its end (`run_and_follow`), as `drive_runs` paces them."""

    async def one(index: int) -> Outcome:
        return await run_and_follow(platform, api, workflow_id, make_input(index), index)

    return await drive_runs(one, clients, duration_s=duration_s, count=count)


async def drive_runs(
    run_one: RunOne, clients: int, *, duration_s: float | None = None, count: int | None = None
) -> Drive:
    """`clients` concurrent clients, each starting its next run (`run_one(index)`, which
    returns when the run ended) when the last one ended, until `duration_s` has passed or
    `count` runs were started; in-flight runs finish. Any product is driven alike."""
    numbers = itertools.count()
    result = Drive()
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else float("inf")

    async def client() -> None:
        while time.perf_counter() < deadline:
            index = next(numbers)
            if count is not None and index >= count:
                return
            result.outcomes.append(await run_one(index))

    await asyncio.gather(*(client() for _ in range(clients)))
    result.elapsed_s = time.perf_counter() - started
    return result


async def verify(
    api: httpx.AsyncClient, drive_result: Drive, expected: Callable[[int], Any]
) -> list[str]:
    """Fetch every run the clients started and check it completed with the right output;
    return what is wrong (empty: nothing lost)."""
    problems = [
        f"run {o.index}: {o.final}" for o in drive_result.outcomes if o.execution_id is None
    ]
    gate = asyncio.Semaphore(32)

    async def check(outcome: Outcome) -> None:
        async with gate:
            response = await get_retrying(api, f"{E}/{outcome.execution_id}")
        if response is None:
            problems.append(f"{outcome.execution_id}: no answer")
            return
        if response.status_code != 200:
            problems.append(f"{outcome.execution_id}: HTTP {response.status_code}")
            return
        record = response.json()
        if record["status"] != "completed":
            problems.append(f"{outcome.execution_id}: status {record['status']}")
        elif record["output_data"] != expected(outcome.index):
            problems.append(f"{outcome.execution_id}: output {record['output_data']!r}")

    await asyncio.gather(*(check(o) for o in drive_result.outcomes if o.execution_id))
    return problems


async def get_retrying(api: httpx.AsyncClient, path: str, tries: int = 3) -> httpx.Response | None:
    """GET, again on a dropped connection (a keep-alive connection the server closed just
    as it was reused is no fault of the platform's data); None if no try got an answer."""
    for attempt in range(tries):
        try:
            return await api.get(path)
        except httpx.TransportError:
            await asyncio.sleep(0.2 * (attempt + 1))
    return None
