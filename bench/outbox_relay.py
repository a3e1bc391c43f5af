"""How fast stored events reach JetStream through the outbox relay, per store backend.

Run with `make bench`. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path

from services.auth.application import AuthApplication
from services.auth.domain import User
from services.auth.integration import to_integration_event
from services.auth.settings import AuthSettings
from shared.bus.client import JetStreamBus
from shared.bus.outbox import OutboxRelay
from tests.support.processes import NatsServer
from tests.support.stores import postgres_unavailable_reason, temporary_postgres_database

EVENTS = 2000
SECRET = "bench-secret-" + "x" * 40


async def measure(settings: AuthSettings) -> tuple[float, float]:
    app = AuthApplication(settings)
    users = [User(f"u{i}", f"u{i}@example.com", "not-a-real-hash", "user") for i in range(EVENTS)]
    started = time.perf_counter()
    for start in range(0, EVENTS, 100):
        await asyncio.to_thread(app.save, *users[start : start + 100])
    store_rate = EVENTS / (time.perf_counter() - started)
    bus = JetStreamBus(settings, name="bench")
    bus.start()
    await bus.wait_ready(timeout=10)
    relay = OutboxRelay(app, bus, to_integration_event, source="auth")
    started = time.perf_counter()
    published = await relay.relay_pending()
    relay_rate = published / (time.perf_counter() - started)
    await bus.close()
    app.close()
    return store_rate, relay_rate


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        nats = NatsServer(Path(tmp))
        nats.start()
        try:
            base = {"jwt_secret": SECRET, "nats_url": nats.url, "data_dir": Path(tmp) / "data"}
            store, relay = asyncio.run(measure(AuthSettings(**base)))  # type: ignore[arg-type]
            print(f"sqlite   : store {store:8.0f} events/s   relay {relay:8.0f} events/s")
            if postgres_unavailable_reason() is None:
                with temporary_postgres_database() as dbname, contextlib.ExitStack():
                    settings = AuthSettings(
                        **base,  # type: ignore[arg-type]
                        store="postgres",
                        postgres_dbname=dbname,
                        postgres_schema_prefix=f"b{uuid.uuid4().hex[:6]}_",
                    )
                    store, relay = asyncio.run(measure(settings))
                    print(f"postgres : store {store:8.0f} events/s   relay {relay:8.0f} events/s")
        finally:
            nats.stop()


if __name__ == "__main__":
    main()
