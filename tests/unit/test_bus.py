"""The JetStream client: streams declared idempotently, connection that waits for NATS."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import nats
from nats.js.api import RetentionPolicy

from shared.bus.client import JetStreamBus, ensure_streams
from shared.bus.streams import stream_configs
from shared.settings import PlatformSettings
from tests.support.processes import NatsServer

SECRET = "bus-test-secret-" + "x" * 32


async def test_streams_are_declared_idempotently(nats_server: NatsServer) -> None:
    settings = PlatformSettings(jwt_secret=SECRET, nats_url=nats_server.url)
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js, stream_configs(settings))
        await ensure_streams(js, stream_configs(settings))  # second time: no error, no change
        events = await js.stream_info("EVENTS")
        runs = await js.stream_info("NODE_RUNS")
        results = await js.stream_info("NODE_RESULTS")
        assert events.config.subjects == ["events.>"]
        assert events.config.retention == RetentionPolicy.LIMITS
        assert events.config.duplicate_window == settings.events_duplicate_window_s
        assert runs.config.subjects == ["cmd.node.run"]
        assert runs.config.retention == RetentionPolicy.WORK_QUEUE
        assert results.config.subjects == ["evt.node.>"]
    finally:
        await nc.close()


async def test_changed_limits_are_applied_to_an_existing_stream(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        shorter = PlatformSettings(jwt_secret=SECRET, events_duplicate_window_s=30)
        await ensure_streams(js, stream_configs(shorter))
        assert (await js.stream_info("EVENTS")).config.duplicate_window == 30
        await ensure_streams(js, stream_configs(PlatformSettings(jwt_secret=SECRET)))
        assert (await js.stream_info("EVENTS")).config.duplicate_window == 600
    finally:
        await nc.close()


async def test_bus_waits_for_a_late_nats_and_declares_streams(tmp_path: Path) -> None:
    late = NatsServer(tmp_path)
    bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=late.url), name="late")
    bus.start()
    try:
        assert not bus.connected
        assert not await bus.ping()
        late.start()
        await bus.wait_ready(timeout=20)
        assert await bus.ping()
        ack = await bus.publish("events.test.1.Happened", b"{}", msg_id="1:1")
        again = await bus.publish("events.test.1.Happened", b"{}", msg_id="1:1")
        assert not ack.duplicate
        assert again.duplicate
    finally:
        await bus.close()
        late.stop()


async def test_bus_rebuilds_after_nats_restarts_with_an_empty_store(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    server.start()
    bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=server.url), name="restart")
    reconnects: list[int] = []

    async def count(_js: object) -> None:
        reconnects.append(1)

    bus.on_connected(count)
    bus.start()
    try:
        await bus.wait_ready(timeout=10)
        server.stop()
        for child in (tmp_path / "nats").iterdir():  # the new server starts with no streams
            shutil.rmtree(child)
        server.start()
        for _ in range(200):
            if len(reconnects) >= 2 and bus.connected:
                break
            await asyncio.sleep(0.1)
        assert len(reconnects) >= 2
        ack = await bus.publish("events.test.2.Happened", b"{}", msg_id="2:1")
        assert ack.stream == "EVENTS"
    finally:
        await bus.close()
        server.stop()
