"""`agentflow-audit`: replay and verify the platform's event history.

An operator's tool: it reads the services' stores and the EVENTS stream directly, with the
services' settings (AGENTFLOW_* variables, or a .env file in the working directory).

    agentflow-audit stream [--from-seq N | --since TIME] [filters]   # the EVENTS stream
    agentflow-audit store SERVICE [--from N] [filters]              # one service's store
    agentflow-audit history SERVICE AGGREGATE_ID [--at VERSION]     # one aggregate
    agentflow-audit verify SERVICE          # every stored event published once, and only those
    agentflow-audit rebuild-check SERVICE   # a read model rebuilt from zero equals the live one

Filters: --aggregate TYPE, --id AGGREGATE_ID, --type EVENT_TYPE, --user USER_ID.
stream and store print JSON lines by default (--format table for a table); history, verify
and rebuild-check print tables (--json for JSON). A replay shows its progress on stderr when
that is a terminal. A replay of the stream reads up to the stream's last sequence as it was
when the replay began; events published meanwhile are left for the next run.

Secrets and password hashes are redacted in everything printed. Exit status: 0 done, 1 a
check failed (or no such aggregate), 2 a setting or an argument is wrong, 3 the EVENTS stream
could not be read to its end (NATS unreachable, no stream, or it stopped delivering).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import nats.errors
import nats.js.errors
import sqlalchemy as sa

from services.audit import output
from services.audit.replay import ReplayIncomplete, stored_events, stream_messages
from shared.bus.envelope import msg_id
from shared.eventstore import EventSourcedApplication
from shared.history import AggregateUnknown, aggregate_history, event_record, json_safe, state_at
from shared.readmodel import read_model_engine, read_model_metadata
from shared.settings import PlatformSettings, ServiceSettings
from shared.settings_loading import SETTINGS_HELP as TOOL_SETTINGS_HELP
from shared.settings_loading import load_settings

PROG = "agentflow-audit"
CHECK_FAILED, UNREACHABLE = 1, 3
SETTINGS_HELP = f"""\
{TOOL_SETTINGS_HELP}
In the checkout, `make audit ARGS="verify executor"` runs it with `make run`'s settings."""


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


class Unreachable(RuntimeError):
    """The EVENTS stream could not be read to its end: the replay's result would be wrong."""


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _open(service: str) -> tuple[ServiceSettings, EventSourcedApplication]:
    parts = SERVICES[service]
    settings: ServiceSettings = load_settings(_load(parts.settings), PROG, tool=True)
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


# -- the store ---------------------------------------------------------------------------


def cmd_store(args: argparse.Namespace, filters: Filters) -> int:
    _, app = _open(args.service)
    printer = output.RecordPrinter(args.format, f"{args.service} store")
    try:
        with output.progress_bar(f"{args.service} store") as progress:
            for position, event in stored_events(app, args.from_position, progress):
                record = event_record(event)
                if filters.admit(record):
                    printer(position, record)
    finally:
        app.close()
    printer.finish()
    return 0


def cmd_history(args: argparse.Namespace, filters: Filters) -> int:
    try:
        aggregate_id = UUID(args.aggregate_id)
    except ValueError:
        print(f"{PROG}: {args.aggregate_id!r} is not an aggregate id (a UUID)", file=sys.stderr)
        return CHECK_FAILED
    _, app = _open(args.service)
    try:
        records = aggregate_history(app, aggregate_id)
        state = state_at(app, aggregate_id, args.at)
    except AggregateUnknown:
        print(f"{PROG}: {args.service} has no aggregate {aggregate_id}", file=sys.stderr)
        return CHECK_FAILED
    finally:
        app.close()
    if args.format == "json":
        for record in records:
            output.print_json(record)
        output.print_json({"state_at_version": state})
    else:
        output.history_tables(records, state, args.at)
    return 0


# -- the stream --------------------------------------------------------------------------


async def _replay(
    nats_url: str,
    from_seq: int | None,
    since: datetime | None,
    on_message: Callable[[int, str, dict[str, Any]], None],
) -> int:
    """Feeds every message to `on_message`; returns the last sequence read (0: none)."""
    last = 0
    try:
        with output.progress_bar("EVENTS stream") as progress:
            async for message in stream_messages(
                nats_url, from_seq=from_seq, since=since, progress=progress
            ):
                on_message(message.sequence, message.msg_id, message.envelope)
                last = message.sequence
    except ReplayIncomplete as exc:
        raise Unreachable(str(exc)) from exc
    except nats.js.errors.NotFoundError as exc:
        raise Unreachable(
            f"the NATS server at {nats_url} has no EVENTS stream (has no service started there?)"
        ) from exc
    except (nats.errors.Error, OSError) as exc:
        raise Unreachable(f"cannot read the EVENTS stream at {nats_url}: {exc!r}") from exc
    return last


def cmd_stream(args: argparse.Namespace, filters: Filters) -> int:
    settings = load_settings(PlatformSettings, PROG, tool=True)
    printer = output.RecordPrinter(args.format, "EVENTS stream")

    def show(sequence: int, _: str, envelope: dict[str, Any]) -> None:
        if filters.admit(envelope):
            printer(sequence, envelope)

    asyncio.run(_replay(settings.nats_url, args.from_seq, args.since, show))
    printer.finish()
    return 0


# -- checks ------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace, filters: Filters) -> int:
    """Store and stream agree: each publishable stored event is in EVENTS exactly once."""
    settings, app = _open(args.service)
    translate: Callable[[Any], Any] = _load(SERVICES[args.service].translator)
    try:
        with output.progress_bar(f"{args.service} store") as progress:
            expected = {
                msg_id(str(event.originator_id), event.originator_version)
                for _, event in stored_events(app, 1, progress)
                if translate(event) is not None
            }
    finally:
        app.close()
    published: Counter[str] = Counter()

    def count(_: int, message_id: str, envelope: dict[str, Any]) -> None:
        if envelope.get("source") == args.service:
            published[message_id] += 1

    last = asyncio.run(_replay(settings.nats_url, None, None, count))
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
        "stream_last_sequence": last,
        "examples": {"missing": missing[:5], "duplicates": twice[:5], "unknown": unknown[:5]},
    }
    if args.format == "json":
        output.print_json(report)
    else:
        output.verify_table(report)
    return 0 if not (missing or twice or unknown) else CHECK_FAILED


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
    assert parts.read_model is not None  # argparse offers only services that have one
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
    report = {
        "service": args.service,
        "events_replayed": applied,
        "rows": len(live_rows),
        "rebuilt_rows": len(rebuilt_rows),
        "equal": equal,
        "differing_ids": differ[:5],
    }
    if args.format == "json":
        output.print_json(report)
    else:
        output.rebuild_table(report)
    return 0 if equal else CHECK_FAILED


# -- the command line --------------------------------------------------------------------


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"give {text!r} a time zone, e.g. 2026-11-23T10:00:00+00:00 (a bare time could be "
            "any zone)"
        )
    return moment


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, epilog=SETTINGS_HELP, formatter_class=raw
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=summary, description=description, epilog=SETTINGS_HELP, formatter_class=raw
        )

    def output_format(sub: argparse.ArgumentParser, choices: tuple[str, str]) -> None:
        machine = "jsonl" if "jsonl" in choices else "json"
        sub.add_argument(
            "--format", choices=choices, default=choices[0], help=f"default: {choices[0]}"
        )
        sub.add_argument(
            "--json",
            dest="format",
            action="store_const",
            const=machine,
            help=f"machine-readable output, the same as --format {machine}",
        )

    def filtered(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--aggregate", help="aggregate type: workflow, execution, user, ...")
        sub.add_argument("--id", dest="aggregate_id", help="one aggregate's id")
        sub.add_argument("--type", dest="event_type", help="event type, e.g. NodeCompleted")
        sub.add_argument("--user", help="events that name this user id")
        output_format(sub, ("jsonl", "table"))

    services = sorted(SERVICES)
    service_argument: dict[str, Any] = {
        "choices": services,
        "metavar": "SERVICE",
        "help": f"one of: {', '.join(services)}",
    }
    stream = command(
        "stream",
        "replay the EVENTS stream",
        "Replay the EVENTS stream (integration events), from its first event or from the "
        "given\nsequence or time, up to its last sequence when the replay began.",
    )
    start = stream.add_mutually_exclusive_group()
    start.add_argument("--from-seq", type=int, help="from this stream sequence")
    start.add_argument("--since", type=_moment, help="from this time (ISO 8601 with a time zone)")
    filtered(stream)
    store = command(
        "store",
        "replay one service's stored events",
        "Replay one service's stored domain events, in the order they were stored.",
    )
    store.add_argument("service", **service_argument)
    store.add_argument("--from", dest="from_position", type=int, default=1, help="from this id")
    filtered(store)
    history = command(
        "history",
        "one aggregate's events and its state",
        "Every event of one aggregate (a workflow's versions, an execution's steps), then its\n"
        "state now or after the given version.",
    )
    history.add_argument("service", **service_argument)
    history.add_argument("aggregate_id")
    history.add_argument("--at", type=int, help="state after this version (default: now)")
    output_format(history, ("table", "json"))
    verify = command(
        "verify",
        "store and EVENTS stream agree",
        "Check that every publishable event the service stored is in the EVENTS stream "
        "exactly\nonce, and that nothing else there claims to come from the service. "
        "Exit status 1 if not.",
    )
    verify.add_argument("service", **service_argument)
    output_format(verify, ("table", "json"))
    rebuild = command(
        "rebuild-check",
        "a rebuilt read model equals the live one",
        "Rebuild the service's list read model from zero into a scratch database and "
        "compare it\nwith the live one. Exit status 1 if they differ.",
    )
    with_list = sorted(s for s, p in SERVICES.items() if p.read_model)
    rebuild.add_argument(
        "service", choices=with_list, metavar="SERVICE", help=f"one of: {', '.join(with_list)}"
    )
    output_format(rebuild, ("table", "json"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    try:
        return handlers[args.command](args, filters)
    except Unreachable as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
