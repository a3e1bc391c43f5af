"""Reading what actually reached the EVENTS stream, as an auditor would."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy


@dataclass(frozen=True)
class StreamEvent:
    subject: str
    msg_id: str
    envelope: dict[str, Any]


async def read_events(nats_url: str, subject_filter: str) -> list[StreamEvent]:
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subject_filter,
            stream="EVENTS",
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
                    StreamEvent(msg.subject, headers.get("Nats-Msg-Id", ""), json.loads(msg.data))
                )
        await sub.unsubscribe()
        return found
    finally:
        await nc.close()


def wait_for_events(
    nats_url: str, subject_filter: str, *, at_least: int = 1, timeout: float = 20.0
) -> list[StreamEvent]:
    """Poll until `at_least` events matched, then return all that matched."""
    deadline = time.monotonic() + timeout
    found: list[StreamEvent] = []
    while time.monotonic() < deadline:
        found = asyncio.run(read_events(nats_url, subject_filter))
        if len(found) >= at_least:
            return found
        time.sleep(0.2)
    return found
