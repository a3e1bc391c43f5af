"""The streams of DESIGN.md and the subjects on them. Subjects never overlap between streams."""

from __future__ import annotations

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from shared.settings import PlatformSettings

EVENTS_STREAM = "EVENTS"
NODE_RUNS_STREAM = "NODE_RUNS"
NODE_RESULTS_STREAM = "NODE_RESULTS"

NODE_RUN_SUBJECT = "cmd.node.run"
# The one durable consumer every worker pulls from (KEDA scales workers on its lag).
NODE_WORKERS_DURABLE = "node-workers"


def event_subject(aggregate: str, aggregate_id: str, event_type: str) -> str:
    """`events.<aggregate>.<aggregate_id>.<EventName>`: consumers filter by any level."""
    return f"events.{aggregate}.{aggregate_id}.{event_type}"


def node_result_subject(execution_id: str) -> str:
    return f"evt.node.{execution_id}"


def stream_configs(settings: PlatformSettings) -> list[StreamConfig]:
    day = 24 * 3600.0
    return [
        StreamConfig(
            name=EVENTS_STREAM,
            description="Integration events of every aggregate, for consumers and audit replay.",
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=settings.events_max_age_days * day,
            max_bytes=settings.events_max_bytes,
            discard=DiscardPolicy.OLD,
            duplicate_window=settings.events_duplicate_window_s,
        ),
        StreamConfig(
            name=NODE_RUNS_STREAM,
            description="Node-run commands; each is taken by exactly one worker.",
            subjects=[NODE_RUN_SUBJECT],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=settings.events_duplicate_window_s,
        ),
        StreamConfig(
            name=NODE_RESULTS_STREAM,
            description="Node results flowing back to the orchestrator.",
            subjects=["evt.node.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * day,
            duplicate_window=settings.events_duplicate_window_s,
        ),
    ]
