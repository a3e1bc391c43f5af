"""`agentflow-audit`: replay and verify the platform's event history (an operator's tool; it
reads the services' stores and the `EVENTS` stream directly, with the services' settings).

    agentflow-audit stream [--from-seq N | --since TIME] [filters] [--format jsonl|table]
    agentflow-audit store SERVICE [--from N] [filters] [--format jsonl|table]
    agentflow-audit history SERVICE AGGREGATE_ID [--at VERSION]
    agentflow-audit verify SERVICE            # every stored event published once, and only those
    agentflow-audit rebuild-check SERVICE     # a read model rebuilt from zero equals the live one

Filters: --aggregate TYPE, --id AGGREGATE_ID, --type EVENT_TYPE, --user USER_ID. Secrets and
password hashes are redacted in everything printed. Exit code 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO
from uuid import UUID

import nats
import sqlalchemy as sa
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shared.bus.envelope import msg_id
from shared.bus.streams import EVENTS_STREAM
from shared.eventstore import EventSourcedApplication
from shared.history import aggregate_history, event_record, json_safe, state_at
from shared.readmodel import read_model_engine, read_model_metadata
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceParts:
    settings: str  # "module:Class"
    application: str
    translator: str
    read_model: str | None = None  # "module:Class" of a list read model


SERVICES: dict[str, ServiceParts] = {
    "auth": ServiceParts(
        "services.auth.settings:AuthSettings",
        "services.auth.application:AuthApplication",
        "services.auth.integration:to_integration_event",
    ),
    "workflows": ServiceParts(
        "services.workflows.settings:WorkflowsSettings",
        "services.workflows.application:WorkflowsApplication",
        "services.workflows.integration:to_integration_event",
        "services.workflows.readmodel:WorkflowList",
    ),
    "executor": ServiceParts(
        "services.executor.settings:ExecutorSettings",
        "services.executor.application:ExecutorApplication",
        "services.executor.integration:to_integration_event",
        "services.executor.readmodel:ExecutionList",
    ),
    "datasources": ServiceParts(
        "services.datasources.settings:DataSourcesSettings",
        "services.datasources.application:DataSourcesApplication",
        "services.datasources.integration:to_integration_event",
        "services.datasources.readmodel:DataSourceList",
    ),
}


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _open(service: str) -> tuple[ServiceSettings, EventSourcedApplication]:
    parts = SERVICES[service]
    settings = _load(parts.settings)()
    return settings, _load(parts.application)(settings)


@dataclass(frozen=True)
class Filters:
    aggregate: str | None = None
    aggregate_id: str | None = None
    event_type: str | None = None
    user: str | None = None

    def admit(self, record: dict[str, Any]) -> bool:
        kind = str(record.get("type", ""))
        if self.aggregate and self.aggregate.lower() not in (
            str(record.get("aggregate", "")).lower(),
            kind.split(".")[0].lower(),
        ):
            return False
        if self.aggregate_id and record.get("aggregate_id") != self.aggregate_id:
            return False
        if self.event_type and self.event_type not in (kind, kind.split(".")[-1]):
            return False
        return not (self.user and self.user not in json.dumps(record.get("data", {})))


class Printer:
    """JSON lines, or a table of the main columns; progress on stderr for long replays."""

    def __init__(self, fmt: str, out: TextIO = sys.stdout, total: int | None = None) -> None:
        self._fmt = fmt
        self._out = out
        self._total = total
        self._seen = 0
        if fmt == "table":
            out.write(f"{'position':>9}  {'time':<32} {'type':<34} {'aggregate id':<36} ver\n")

    def __call__(self, position: int, record: dict[str, Any]) -> None:
        if self._fmt == "jsonl":
            self._out.write(json.dumps({"position": position, **record}, ensure_ascii=False))
            self._out.write("\n")
        else:
            when = str(record.get("timestamp") or record.get("occurred_at", ""))
            self._out.write(
                f"{position:>9}  {when:<32} {record.get('type', ''):<34} "
                f"{record.get('aggregate_id', ''):<36} {record.get('version', '')}\n"
            )

    def progress(self, position: int) -> None:
        self._seen += 1
        if self._total and sys.stderr.isatty() and self._seen % 1000 == 0:
            done = min(100, int(100 * position / self._total))
            bar = "#" * (done // 5)
            sys.stderr.write(f"\r[{bar:<20}] {done:3d}% {position}/{self._total}")
        if self._total and position >= self._total and sys.stderr.isatty():
            sys.stderr.write("\n")


# -- the store ---------------------------------------------------------------------------


def stored_events(app: EventSourcedApplication, start: int) -> Iterator[tuple[int, Any]]:
    position = max(0, start - 1)
    while True:
        page = app.recorder.select_notifications(position, 500, inclusive_of_start=False)
        if not page:
            return
        for notification in page:
            yield notification.id, app.mapper.to_domain_event(notification)
        position = page[-1].id


def cmd_store(args: argparse.Namespace, filters: Filters) -> int:
    _, app = _open(args.service)
    try:
        printer = Printer(args.format, total=app.recorder.max_notification_id())
        for position, event in stored_events(app, args.from_position):
            record = event_record(event)
            printer.progress(position)
            if filters.admit(record):
                printer(position, record)
    finally:
        app.close()
    return 0


def cmd_history(args: argparse.Namespace, filters: Filters) -> int:
    _, app = _open(args.service)
    try:
        aggregate_id = UUID(args.aggregate_id)
        for record in aggregate_history(app, aggregate_id):
            print(json.dumps(record, ensure_ascii=False))
        state = state_at(app, aggregate_id, args.at)
        print(json.dumps({"state_at_version": state}, ensure_ascii=False))
    finally:
        app.close()
    return 0


# -- the stream --------------------------------------------------------------------------


async def stream_envelopes(
    nats_url: str, from_seq: int | None, since: datetime | None
) -> tuple[int, list[tuple[int, str, dict[str, Any]]]]:
    """(last sequence, [(sequence, Nats-Msg-Id, envelope)]) of the EVENTS stream."""
    nc = await nats.connect(nats_url, connect_timeout=3, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL)
        if from_seq is not None:
            config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, from_seq
        elif since is not None:
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = since
        sub = await js.pull_subscribe("events.>", stream=EVENTS_STREAM, config=config)
        found: list[tuple[int, str, dict[str, Any]]] = []
        while True:
            try:
                batch = await sub.fetch(500, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                break
            for message in batch:
                headers = message.headers or {}
                sequence = message.metadata.sequence.stream
                found.append((sequence, headers.get("Nats-Msg-Id", ""), json.loads(message.data)))
        await sub.unsubscribe()
        return int(info.state.last_seq), found
    finally:
        await nc.close()


def cmd_stream(args: argparse.Namespace, filters: Filters) -> int:
    settings = ServiceSettings()
    since = datetime.fromisoformat(args.since) if args.since else None
    last, envelopes = asyncio.run(stream_envelopes(settings.nats_url, args.from_seq, since))
    printer = Printer(args.format, total=last)
    for sequence, _, envelope in envelopes:
        printer.progress(sequence)
        if filters.admit(envelope):
            printer(sequence, envelope)
    return 0


# -- checks ------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace, filters: Filters) -> int:
    """Store and stream agree: each publishable stored event is in EVENTS exactly once."""
    settings, app = _open(args.service)
    translate: Callable[[Any], Any] = _load(SERVICES[args.service].translator)
    try:
        expected = {
            msg_id(str(event.originator_id), event.originator_version)
            for _, event in stored_events(app, 1)
            if translate(event) is not None
        }
    finally:
        app.close()
    _, envelopes = asyncio.run(stream_envelopes(settings.nats_url, None, None))
    published = Counter(m for _, m, e in envelopes if e.get("source") == args.service)
    missing = sorted(expected - set(published))
    twice = sorted(m for m, n in published.items() if n > 1)
    unknown = sorted(set(published) - expected)
    report = {
        "service": args.service,
        "stored_publishable": len(expected),
        "published": sum(published.values()),
        "missing": len(missing),
        "duplicates": len(twice),
        "unknown": len(unknown),
        "examples": {"missing": missing[:5], "duplicates": twice[:5], "unknown": unknown[:5]},
    }
    print(json.dumps(report, ensure_ascii=False))
    return 0 if not (missing or twice or unknown) else 1


def _rows(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    return [
        {k: json_safe(v.replace(tzinfo=None) if isinstance(v, datetime) else v)
         for k, v in row.items()}
        for row in rows
    ]  # fmt: skip


def cmd_rebuild_check(args: argparse.Namespace, filters: Filters) -> int:
    """Project the service's list again, into a scratch SQLite database, and compare."""
    parts = SERVICES[args.service]
    if parts.read_model is None:
        print(json.dumps({"service": args.service, "error": "no read model"}))
        return 1
    settings, app = _open(args.service)
    model_class = _load(parts.read_model)
    live_engine = read_model_engine(settings)
    scratch_engine = sa.create_engine("sqlite://")
    try:
        live = model_class(app, live_engine, read_model_metadata(settings))
        live.projection.create_tables()
        live.projection.catch_up(look=True)
        scratch = model_class(app, scratch_engine, sa.MetaData())
        scratch.projection.create_tables()
        applied = scratch.projection.rebuild()
        live_rows, rebuilt_rows = (
            _rows(live_engine, live.table),
            _rows(scratch_engine, scratch.table),
        )
    finally:
        live_engine.dispose()
        scratch_engine.dispose()
        app.close()
    differ = [a["id"] for a, b in zip(live_rows, rebuilt_rows, strict=False) if a != b]
    equal = len(live_rows) == len(rebuilt_rows) and not differ
    print(json.dumps({"service": args.service, "events_replayed": applied, "rows": len(live_rows),
                      "rebuilt_rows": len(rebuilt_rows), "equal": equal,
                      "differing_ids": differ[:5]}))  # fmt: skip
    return 0 if equal else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentflow-audit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def filtered(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--aggregate", help="aggregate type: workflow, execution, user, ...")
        sub.add_argument("--id", dest="aggregate_id", help="one aggregate's id")
        sub.add_argument("--type", dest="event_type", help="event type, e.g. NodeCompleted")
        sub.add_argument("--user", help="events that name this user id")
        sub.add_argument("--format", choices=("jsonl", "table"), default="jsonl")

    stream = commands.add_parser("stream", help="replay the EVENTS stream")
    start = stream.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, help="from this stream sequence")
    start.add_argument("--since", help="from this time (ISO 8601, with a time zone)")
    filtered(stream)
    store = commands.add_parser("store", help="replay one service's stored events")
    store.add_argument("service", choices=sorted(SERVICES))
    store.add_argument("--from", dest="from_position", type=int, default=1)
    filtered(store)
    history = commands.add_parser("history", help="one aggregate's events and its state")
    history.add_argument("service", choices=sorted(SERVICES))
    history.add_argument("aggregate_id")
    history.add_argument("--at", type=int, help="state after this version (default: now)")
    verify = commands.add_parser("verify", help="store and EVENTS stream agree")
    verify.add_argument("service", choices=sorted(SERVICES))
    rebuild = commands.add_parser("rebuild-check", help="a rebuilt read model equals the live one")
    rebuild.add_argument("service", choices=sorted(s for s, p in SERVICES.items() if p.read_model))

    args = parser.parse_args(argv)
    filters = Filters(
        getattr(args, "aggregate", None),
        getattr(args, "aggregate_id", None),
        getattr(args, "event_type", None),
        getattr(args, "user", None),
    )
    handlers: dict[str, Callable[[argparse.Namespace, Filters], int]] = {
        "stream": cmd_stream,
        "store": cmd_store,
        "history": cmd_history,
        "verify": cmd_verify,
        "rebuild-check": cmd_rebuild_check,
    }
    return handlers[args.command](args, filters)


if __name__ == "__main__":
    sys.exit(main())
