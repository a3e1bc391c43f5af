"""Durable pull consumers keep consuming across a NATS restart, and redeliver failures."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

from nats.aio.msg import Msg

from shared.bus.client import BusUnavailable, JetStreamBus
from shared.bus.consumer import Handler, PullConsumer
from shared.settings import PlatformSettings
from tests.support.processes import NatsServer

SECRET = "consumer-test-secret-" + "x" * 32


async def wait_until(condition, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def publish(bus: JetStreamBus, topic: str, n: int) -> None:
    """Publish as the outbox does: retry while the bus is (re)connecting."""
    for _ in range(100):
        try:
            await bus.publish(
                f"events.test.{topic}.Counted", str(n).encode(), msg_id=f"{topic}:{n}"
            )
            return
        except BusUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError("NATS never came back")


async def test_consumer_survives_a_nats_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path)
    server.start()
    bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=server.url), name="c")
    seen: set[int] = set()

    async def handler(message: Msg) -> None:
        seen.add(int(message.data))

    topic = uuid.uuid4().hex
    consumer = PullConsumer(
        bus,
        stream="EVENTS",
        durable="test-counter",
        subject=f"events.test.{topic}.>",
        handler=handler,
    )
    consumer.start()
    bus.start()
    try:
        await bus.wait_ready(timeout=10)
        for n in range(5):
            await publish(bus, topic, n)
        await wait_until(lambda: seen == set(range(5)))

        server.stop()
        server.start()  # same store: the stream and the durable consumer's position survive
        for n in range(5, 10):
            await publish(bus, topic, n)
        await wait_until(lambda: seen == set(range(10)))

        server.stop()
        shutil.rmtree(tmp_path / "nats")  # a new server that lost the stream and the consumer
        server.start()
        for n in range(10, 15):
            await publish(bus, topic, n)
        await wait_until(lambda: seen == set(range(15)))
    finally:
        await consumer.stop()
        await bus.close()
        server.stop()


async def test_a_failed_message_is_redelivered(nats_server: NatsServer) -> None:
    bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=nats_server.url), name="r")
    attempts: list[int] = []

    async def flaky(message: Msg) -> None:
        attempts.append(int(message.data))
        if len(attempts) == 1:
            raise RuntimeError("first delivery fails")

    topic = uuid.uuid4().hex
    consumer = PullConsumer(
        bus,
        stream="EVENTS",
        durable=f"flaky-{topic}",
        subject=f"events.test.{topic}.>",
        handler=flaky,
        retry_delay_s=0.1,
    )
    consumer.start()
    bus.start()
    try:
        await bus.wait_ready(timeout=10)
        await publish(bus, topic, 7)
        await wait_until(lambda: len(attempts) >= 2)
        assert attempts[:2] == [7, 7]
    finally:
        await consumer.stop()
        await bus.close()


async def test_a_concurrent_consumer_handles_up_to_its_limit_at_once(
    nats_server: NatsServer,
) -> None:
    bus = JetStreamBus(PlatformSettings(jwt_secret=SECRET, nats_url=nats_server.url), name="p")
    running: set[int] = set()
    most = 0
    done: set[int] = set()
    release = asyncio.Event()

    async def slow(message: Msg) -> None:
        nonlocal most
        n = int(message.data)
        running.add(n)
        most = max(most, len(running))
        await release.wait()
        running.discard(n)
        done.add(n)

    topic = uuid.uuid4().hex
    consumer = PullConsumer(
        bus,
        stream="EVENTS",
        durable=f"wide-{topic}",
        subject=f"events.test.{topic}.>",
        handler=slow,
        concurrency=3,
    )
    consumer.start()
    bus.start()
    try:
        await bus.wait_ready(timeout=10)
        for n in range(7):
            await publish(bus, topic, n)
        await wait_until(lambda: len(running) == 3)
        await asyncio.sleep(0.3)  # no fourth message is taken while three are in hand
        assert (len(running), most) == (3, 3)
        release.set()
        await wait_until(lambda: done == set(range(7)))
        assert most == 3
    finally:
        await consumer.stop()
        await bus.close()


async def test_stopping_gives_unfinished_messages_back_at_once(nats_server: NatsServer) -> None:
    settings = PlatformSettings(jwt_secret=SECRET, nats_url=nats_server.url)
    first_bus, second_bus = JetStreamBus(settings, name="s1"), JetStreamBus(settings, name="s2")
    finished: list[str] = []
    topic = uuid.uuid4().hex

    async def never_done(message: Msg) -> None:
        await asyncio.sleep(3600)

    async def quick(message: Msg) -> None:
        finished.append(message.data.decode())

    def consumer(bus: JetStreamBus, handler: Handler) -> PullConsumer:
        return PullConsumer(bus, stream="EVENTS", durable=f"shared-{topic}",
                            subject=f"events.test.{topic}.>", handler=handler,
                            concurrency=2, ack_wait_s=60)  # fmt: skip

    slow = consumer(first_bus, never_done)
    slow.start()
    first_bus.start()
    try:
        await first_bus.wait_ready(timeout=10)
        await publish(first_bus, topic, 1)
        await wait_until(lambda: len(slow._in_flight) == 1)
        await slow.stop(grace_s=0.1)  # the node in hand does not finish: it is released
        fast = consumer(second_bus, quick)
        fast.start()
        second_bus.start()
        # Redelivered by the nak, long before the 60 s ack wait would have.
        await wait_until(lambda: finished == ["1"], timeout=15)
        await fast.stop()
    finally:
        await first_bus.close()
        await second_bus.close()
