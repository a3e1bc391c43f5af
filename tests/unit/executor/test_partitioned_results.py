"""The orchestrator with partitions (ADR 0009), on a real nats-server and a real store: a
command names its partition and its result comes back there; a result sent the old way
(before partitions) is still applied once after an upgrade; a start taken by a replica that
does not own the run's partition is handed to the one that does; when a replica stops, its
partitions' results are applied by the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.orchestrator import ORCHESTRATOR_DURABLE, Orchestrator
from services.executor.partitions import Partitioning, partition_of
from services.executor.settings import ExecutorSettings
from shared.bus.client import JetStreamBus, ensure_streams
from shared.bus.streams import (
    NODE_RESULTS_STREAM,
    NODE_RUN_SUBJECT,
    NODE_RUNS_STREAM,
    NODE_WORKERS_DURABLE,
    PARTITION_HEADER,
    advance_subject,
    node_result_subject,
    stream_configs,
)
from tests.integration.test_executions import edge, node
from tests.support.events import read_events
from tests.support.processes import NatsServer

SECRET = "x" * 40
GRAPH = {
    "nodes": [
        node("start-1", "start"),
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}"),
        node("end-1", "end"),
    ],
    "edges": [edge("start-1", "ask"), edge("ask", "end-1")],
}


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def settings(
    store: dict[str, str], monkeypatch: pytest.MonkeyPatch, nats_server: NatsServer
) -> ExecutorSettings:
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    return ExecutorSettings(environment="test", jwt_secret=SECRET, nats_url=nats_server.url)


@pytest.fixture
async def replicas(settings: ExecutorSettings) -> AsyncIterator[Callable[[str], Orchestrator]]:
    """Executor api replicas as one process would run them: each its own application (over
    the one store), bus and orchestrator."""
    running: list[tuple[ExecutorApplication, JetStreamBus, Orchestrator]] = []

    def start(name: str) -> Orchestrator:
        app = ExecutorApplication(settings)
        bus = JetStreamBus(settings, name=name)
        orchestrator = Orchestrator(
            app, bus, partitioning=Partitioning(16, 2.0, name), unfinished=lambda: []
        )
        orchestrator.start()
        bus.start()
        running.append((app, bus, orchestrator))
        return orchestrator

    yield start
    for app, bus, orchestrator in running:
        await orchestrator.stop()
        await bus.close()
        app.close()


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def new_run(settings: ExecutorSettings, *, started: bool = False) -> uuid.UUID:
    """A run of start -> llm (on a worker) -> end; `started`: its llm node already sent."""
    app = ExecutorApplication(settings)
    try:
        execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {"text": "hi"})
        if started:
            execution.record_node_started("ask", "ask", "llm", 1, {})
        app.save(execution)
        return execution.id
    finally:
        app.close()


def status(settings: ExecutorSettings, execution_id: uuid.UUID) -> tuple[str, list[str]]:
    """The run's status, and its stored events as "<type> <run key>"."""
    app = ExecutorApplication(settings)
    try:
        execution = app.get(execution_id)
        kinds = [
            f"{type(e).__qualname__} {getattr(e, 'run_key', '')}".strip()
            for e in app.events.get(execution_id)
        ]
        return execution.status, kinds
    finally:
        app.close()


async def wait_status(
    settings: ExecutorSettings, execution_id: uuid.UUID, wanted: str
) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        now, kinds = await asyncio.to_thread(status, settings, execution_id)
        if now == wanted:
            return kinds
        assert time.monotonic() < deadline, f"{execution_id} still {now}"
        await asyncio.sleep(0.1)


async def take_command(nats_url: str) -> tuple[NodeRunCommand, dict[str, str]]:
    """What a worker receives next from the queue, and its headers."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(NODE_RUN_SUBJECT, NODE_WORKERS_DURABLE, NODE_RUNS_STREAM)
        (message,) = await sub.fetch(1, timeout=10)
        await message.ack()
        return NodeRunCommand.model_validate_json(message.data), dict(message.headers or {})
    finally:
        await nc.close()


def answer(execution_id: uuid.UUID) -> NodeRunResult:
    return NodeRunResult(
        execution_id=str(execution_id), run_key="ask", attempt=1, ok=True, output={"text": "yo"}
    )


async def publish(nats_url: str, subject: str, result: NodeRunResult) -> None:
    nc = await nats.connect(nats_url)
    try:
        headers = {"Nats-Msg-Id": result.msg_id}
        await nc.jetstream().publish(subject, result.model_dump_json().encode(), headers=headers)
    finally:
        await nc.close()


async def test_a_result_sent_before_partitions_is_applied_once_after_the_upgrade(
    settings: ExecutorSettings, replicas: Callable[[str], Orchestrator], nats_server: NatsServer
) -> None:
    # Before the upgrade: the one consumer read all of evt.node.>, and a result is waiting.
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await ensure_streams(js, stream_configs(settings))
    old = ConsumerConfig(
        durable_name=ORCHESTRATOR_DURABLE,
        filter_subject="evt.node.>",
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
    )
    await js.add_consumer(NODE_RESULTS_STREAM, old)
    await nc.close()
    execution_id = await asyncio.to_thread(new_run, settings, started=True)
    await publish(nats_server.url, node_result_subject(str(execution_id)), answer(execution_id))

    a = replicas("a-8103")
    kinds = await wait_status(settings, execution_id, "completed")
    assert kinds.count("Execution.NodeCompleted ask") == 1
    assert kinds.count("Execution.Completed") == 1
    nc = await nats.connect(nats_server.url)
    info = await nc.jetstream().consumer_info(NODE_RESULTS_STREAM, ORCHESTRATOR_DURABLE)
    await nc.close()
    assert info.config.filter_subject == "evt.node.*"  # it no longer takes partitions' results
    forwarded = await read_events(
        nats_server.url, f"evt.node.*.{execution_id}", NODE_RESULTS_STREAM
    )
    partition = partition_of(execution_id, 16)
    assert [e.subject for e in forwarded] == [node_result_subject(str(execution_id), partition)]
    assert a.leases.owns(partition)


async def test_a_start_on_a_replica_without_its_partition_is_handed_to_the_owner(
    settings: ExecutorSettings, replicas: Callable[[str], Orchestrator], nats_server: NatsServer
) -> None:
    a, b = replicas("a-8103"), replicas("b-8103")
    await until(lambda: len(a.leases.owned) == len(b.leases.owned) == 8)
    execution_id = await asyncio.to_thread(new_run, settings)
    partition = partition_of(execution_id, 16)
    owner, other = (a, b) if a.leases.owns(partition) else (b, a)

    other.kick(execution_id)  # as the api does after recording a start
    command, headers = await take_command(nats_server.url)
    assert command.execution_id == str(execution_id)
    assert headers[PARTITION_HEADER] == str(partition)  # its result comes back to the owner
    handed = await read_events(
        nats_server.url, advance_subject(partition, str(execution_id)), NODE_RESULTS_STREAM
    )
    assert [e.envelope["execution_id"] for e in handed] == [str(execution_id)]
    assert owner.leases.owns(partition)

    subject = node_result_subject(str(execution_id), partition)
    await publish(nats_server.url, subject, answer(execution_id))
    kinds = await wait_status(settings, execution_id, "completed")
    assert kinds.count("Execution.NodeCompleted ask") == 1


async def test_a_stopped_replicas_results_are_applied_by_the_other(
    settings: ExecutorSettings, replicas: Callable[[str], Orchestrator], nats_server: NatsServer
) -> None:
    a, b = replicas("a-8103"), replicas("b-8103")
    await until(lambda: len(a.leases.owned) == len(b.leases.owned) == 8)
    runs: list[tuple[uuid.UUID, int]] = []
    while len({p for _, p in runs} & b.leases.owned) == 0:  # a run in one of b's partitions
        execution_id = await asyncio.to_thread(new_run, settings, started=True)
        runs.append((execution_id, partition_of(execution_id, 16)))
    execution_id, partition = next((e, p) for e, p in runs if b.leases.owns(p))

    await b.stop()  # gives its partitions up; a claims them on its next round
    await until(lambda: a.leases.owned == frozenset(range(16)))
    await publish(
        nats_server.url, node_result_subject(str(execution_id), partition), answer(execution_id)
    )
    kinds = await wait_status(settings, execution_id, "completed")
    assert kinds.count("Execution.NodeCompleted ask") == 1
