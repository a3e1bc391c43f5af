"""The outbox relay against a real NATS server and each event-store backend."""

from __future__ import annotations

import asyncio
import json

import pytest

from services.auth.application import AuthApplication
from services.auth.domain import User
from services.auth.integration import to_integration_event
from services.auth.settings import AuthSettings
from shared.bus.client import BusUnavailable, JetStreamBus
from shared.bus.outbox import OutboxRelay
from tests.support.events import read_events
from tests.support.processes import NatsServer, free_port

PASSWORD = "tr0ub4dor3"


@pytest.fixture
async def bus(auth_settings: AuthSettings, nats_server: NatsServer):
    settings = auth_settings.model_copy(update={"nats_url": nats_server.url})
    connected = JetStreamBus(settings, name="test-outbox")
    connected.start()
    await connected.wait_ready(timeout=10)
    yield connected
    await connected.close()


def relay_for(app: AuthApplication, bus: JetStreamBus, **kwargs) -> OutboxRelay:
    return OutboxRelay(app, bus, to_integration_event, source="auth", **kwargs)


async def test_publishes_each_stored_event_once_in_order(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    user = await asyncio.to_thread(auth_app.register, "olga", "olga@example.com", PASSWORD)
    await asyncio.to_thread(auth_app.ensure_admin, "olga", "olga@example.com", PASSWORD)
    relay = relay_for(auth_app, bus)
    assert await relay.relay_pending() == 4  # two user events and two internal claims
    assert await relay.position() == 4
    events = await read_events(nats_server.url, f"events.user.{user.id}.>")
    assert [(e.envelope["type"], e.msg_id) for e in events] == [
        ("UserRegistered", f"{user.id}:1"),
        ("UserRoleChanged", f"{user.id}:2"),
    ]
    assert events[1].envelope["data"] == {"user_id": str(user.id), "role": "admin"}
    assert await relay.relay_pending() == 0  # nothing new, nothing re-sent


async def test_a_relay_that_forgot_its_position_causes_no_duplicates(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    user = await asyncio.to_thread(auth_app.register, "petra", "petra@example.com", PASSWORD)
    await relay_for(auth_app, bus).relay_pending()
    # As after a crash between JetStream's ack and saving the position: everything again.
    amnesiac = relay_for(auth_app, bus, tracking_name="outbox.auth.replayed")
    assert await amnesiac.relay_pending() == 3
    events = await read_events(nats_server.url, f"events.user.{user.id}.>")
    assert len(events) == 1


async def test_a_restarted_relay_resumes_from_its_position(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    first = await asyncio.to_thread(auth_app.register, "quinn", "quinn@example.com", PASSWORD)
    await relay_for(auth_app, bus).relay_pending()
    second = await asyncio.to_thread(auth_app.register, "rosa", "rosa@example.com", PASSWORD)
    assert await relay_for(auth_app, bus).relay_pending() == 3  # only rosa's three records
    for user in (first, second):
        assert len(await read_events(nats_server.url, f"events.user.{user.id}.>")) == 1


async def test_a_save_wakes_the_relay_without_a_poll(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    relay = relay_for(auth_app, bus, poll_interval_s=3600)  # only a wake-up can deliver in time
    relay.start()
    try:
        await asyncio.sleep(0.2)  # let it settle into waiting
        user = await asyncio.to_thread(auth_app.register, "sven", "sven@example.com", PASSWORD)
        for _ in range(100):
            events = await read_events(nats_server.url, f"events.user.{user.id}.>")
            if events:
                break
            await asyncio.sleep(0.1)
        assert [e.envelope["type"] for e in events] == ["UserRegistered"]
        assert json.loads(json.dumps(events[0].envelope))["source"] == "auth"
    finally:
        await relay.stop()


async def test_without_nats_nothing_is_marked_published(
    auth_app: AuthApplication, auth_settings: AuthSettings
) -> None:
    await asyncio.to_thread(auth_app.register, "tara", "tara@example.com", PASSWORD)
    dead = JetStreamBus(
        auth_settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"}), name="x"
    )
    relay = relay_for(auth_app, dead)
    with pytest.raises(BusUnavailable):
        await relay.relay_pending()
    assert await relay.position() == 0


async def test_a_large_backlog_keeps_store_order_across_batches(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    users = [User(f"bulk{i}", f"bulk{i}@example.com", "hash", "user") for i in range(450)]
    for start in range(0, len(users), 150):
        await asyncio.to_thread(auth_app.save, *users[start : start + 150])
    assert await relay_for(auth_app, bus, batch_size=100).relay_pending() == 450
    ours = {str(user.id) for user in users}
    events = await read_events(nats_server.url, "events.user.*.UserRegistered")
    published = [e.envelope["aggregate_id"] for e in events if e.envelope["aggregate_id"] in ours]
    assert published == [str(user.id) for user in users]


async def test_flushed_waits_until_what_this_process_saved_is_on_the_bus(
    auth_app: AuthApplication, bus: JetStreamBus, nats_server: NatsServer
) -> None:
    relay = relay_for(auth_app, bus, poll_interval_s=3600)
    relay.start()
    try:
        user = await asyncio.to_thread(auth_app.register, "uma", "uma@example.com", PASSWORD)
        assert await relay.flushed(timeout_s=10)
        # No waiting here: the event is on the bus once `flushed` says so.
        events = await read_events(nats_server.url, f"events.user.{user.id}.>")
        assert [e.envelope["type"] for e in events] == ["UserRegistered"]
    finally:
        await relay.stop()


async def test_flushed_gives_up_after_its_timeout_while_nats_is_unreachable(
    auth_app: AuthApplication, auth_settings: AuthSettings
) -> None:
    dead = JetStreamBus(
        auth_settings.model_copy(update={"nats_url": f"nats://127.0.0.1:{free_port()}"}), name="x"
    )
    relay = relay_for(auth_app, dead, poll_interval_s=3600)
    relay.start()
    try:
        await asyncio.to_thread(auth_app.register, "vera", "vera@example.com", PASSWORD)
        assert not await relay.flushed(timeout_s=0.5)
        assert await relay.position() == 0  # stored, and still to be published
    finally:
        await relay.stop()


async def test_a_restarted_relay_with_nothing_new_saves_nothing_twice(
    auth_app: AuthApplication, bus: JetStreamBus
) -> None:
    await asyncio.to_thread(auth_app.register, "wren", "wren@example.com", PASSWORD)
    await relay_for(auth_app, bus).relay_pending()
    restarted = relay_for(auth_app, bus)
    assert await restarted.relay_pending() == 0  # the saved position is not recorded again
    await restarted.stop()
    assert await restarted.position() == 3
