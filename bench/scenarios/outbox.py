"""The outbox relay's rates (bench/outbox_relay.py): store to JetStream, per backend."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from bench.context import Context
from bench.outbox_relay import EVENTS, SECRET, measure
from bench.report import Figure
from services.auth.settings import AuthSettings
from tests.support.processes import NatsServer
from tests.support.stores import temporary_postgres_database

S = "outbox"


async def run(ctx: Context) -> None:
    with tempfile.TemporaryDirectory(dir=ctx.options.workdir) as tmp:
        nats = NatsServer(Path(tmp))
        nats.start()
        try:
            base = {"jwt_secret": SECRET, "nats_url": nats.url, "data_dir": Path(tmp) / "data"}
            if ctx.options.postgres:
                with temporary_postgres_database() as dbname:
                    settings = AuthSettings(
                        **base,  # type: ignore[arg-type]
                        store="postgres",
                        postgres_dbname=dbname,
                        postgres_schema_prefix=f"b{uuid.uuid4().hex[:6]}_",
                    )
                    store, relay = await measure(settings)
            else:
                store, relay = await measure(AuthSettings(**base))  # type: ignore[arg-type]
        finally:
            nats.stop()
    note = f"{EVENTS} user events"
    ctx.report.add(Figure(S, "store", store, "events/s", note=note))
    ctx.report.add(Figure(S, "relay to JetStream", relay, "events/s", note=note))
