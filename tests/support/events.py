"""Reading what actually reached the streams, as an auditor would: the EVENTS stream, and the
node results workers send back (NODE_RESULTS), with what a durable consumer has handled."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.bus.streams import EVENTS_STREAM, NODE_RESULTS_STREAM, results_durable


@dataclass(frozen=True)
class StreamEvent:
    subject: str
    msg_id: str
    envelope: dict[str, Any]
    seq: int = 0  # the message's sequence number in its stream


async def read_events(
    nats_url: str, subject_filter: str, stream: str = EVENTS_STREAM
) -> list[StreamEvent]:
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subject_filter,
            stream=stream,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE),
        )
        found: list[StreamEvent] = []
        while True:
            try:
                batch = await sub.fetch(256, timeout=0.5)
            except (NatsTimeout, TimeoutError):  # nats-py raises either, by code path
                break
            for msg in batch:
                headers = msg.headers or {}
                found.append(
                    StreamEvent(
                        msg.subject,
                        headers.get("Nats-Msg-Id", ""),
                        json.loads(msg.data),
                        msg.metadata.sequence.stream,
                    )
                )
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def wait_for_events(
    nats_url: str,
    subject_filter: str,
    *,
    at_least: int = 1,
    timeout: float = 20.0,
    stream: str = EVENTS_STREAM,
) -> list[StreamEvent]:
    """Poll until `at_least` events matched, then return all that matched."""
    deadline = time.monotonic() + timeout
    found: list[StreamEvent] = []
    while time.monotonic() < deadline:
        found = asyncio.run(read_events(nats_url, subject_filter, stream))
        if len(found) >= at_least:
            return found
        time.sleep(0.2)
    return found


def wait_for_node_result(
    nats_url: str, execution_id: str, run_key: str, *, timeout: float = 30.0
) -> StreamEvent:
    """The first result a worker sent for `run_key` of the execution; fails the test if none
    arrives within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        # `evt.node.<partition>.<execution_id>`, whichever partition the execution is in.
        results = asyncio.run(
            read_events(nats_url, f"evt.node.*.{execution_id}", NODE_RESULTS_STREAM)
        )
        mine = [r for r in results if r.envelope.get("run_key") == run_key]
        if mine:
            return mine[0]
        assert time.monotonic() < deadline, (
            f"no worker sent a result for {execution_id}/{run_key} within {timeout} s"
        )
        time.sleep(0.2)


async def acked_through(nats_url: str, stream: str, durable: str) -> int:
    """The stream sequence up to which `durable` has acked every message (0: none)."""
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        info = await nc.jetstream().consumer_info(stream, durable)
        return info.ack_floor.stream_seq if info.ack_floor is not None else 0
    finally:
        await nc.close()


def handled_by_orchestrator(nats_url: str, result: StreamEvent) -> bool:
    """Whether the executor api has handled (applied or ignored, then acked) `result`, a
    message of NODE_RESULTS, on the durable consumer of its partition."""
    tokens = result.subject.split(".")  # evt.node.<partition>.<execution_id>
    durable = results_durable(int(tokens[2]) if len(tokens) == 4 else None)
    through = asyncio.run(acked_through(nats_url, NODE_RESULTS_STREAM, durable))
    return through >= result.seq


def wait_handled_by_orchestrator(nats_url: str, result: StreamEvent, timeout: float = 30.0) -> None:
    """Wait until `handled_by_orchestrator`; fails the test if that takes over `timeout`."""
    deadline = time.monotonic() + timeout
    while not handled_by_orchestrator(nats_url, result):
        assert time.monotonic() < deadline, f"result {result.seq} not handled in {timeout} s"
        time.sleep(0.2)
