"""The streams of docs/architecture.md and the subjects on them. Subjects never overlap
between streams."""

from __future__ import annotations

from collections.abc import Mapping

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

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


# Node results go to the partition of their execution (services/executor/partitions.py, ADR
# 0009): `evt.node.<partition>.<execution_id>`; a start or resume handed to the replica owning
# the partition is `evt.node.<partition>.<execution_id>.advance`. The subject before
# partitions, `evt.node.<execution_id>`, is still read (old workers, results stored before an
# upgrade) and forwarded to the partition.
LEGACY_NODE_RESULTS = "evt.node.*"
# The header on a node-run command that names the partition its result goes to.
PARTITION_HEADER = "Agentflow-Partition"


def node_result_subject(execution_id: str, partition: int | None = None) -> str:
    if partition is None:
        return f"evt.node.{execution_id}"
    return f"evt.node.{partition}.{execution_id}"


def result_subject(execution_id: str, headers: Mapping[str, str] | None) -> str:
    """Where a worker sends the result of a command that came with `headers`: the partition
    the orchestrator named, else (a command sent before partitions) the subject of old."""
    named = (headers or {}).get(PARTITION_HEADER, "")
    return node_result_subject(execution_id, int(named) if named.isdecimal() else None)


def advance_subject(partition: int, execution_id: str) -> str:
    return f"evt.node.{partition}.{execution_id}.advance"


def partition_results(partition: int) -> str:
    """Everything for one partition's owner: its results and its hand-offs."""
    return f"evt.node.{partition}.>"


def results_durable(partition: int | None) -> str:
    """The durable consumer of a partition (None: of the subject before partitions)."""
    return "orchestrator" if partition is None else f"orchestrator-{partition}"


def durable_consumer(
    durable: str, subject: str, *, ack_wait_s: float, max_deliver: int = -1
) -> ConsumerConfig:
    """A durable pull consumer with explicit acks, from the start of its stream."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_deliver=max_deliver,
    )


def node_workers_consumer(ack_wait_s: float) -> ConsumerConfig:
    """The workers' consumer. The executor api declares it too, so it exists (and shows the
    queue's lag to KEDA) while no worker runs, as when workers are scaled to zero."""
    return durable_consumer(NODE_WORKERS_DURABLE, NODE_RUN_SUBJECT, ack_wait_s=ack_wait_s)


def stream_configs(settings: PlatformSettings) -> list[StreamConfig]:
    day = 24 * 3600.0
    replicas = settings.stream_replicas
    return [
        StreamConfig(
            name=EVENTS_STREAM,
            description="Integration events of every aggregate, for consumers and audit replay.",
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
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
            num_replicas=replicas,
            duplicate_window=settings.events_duplicate_window_s,
        ),
        StreamConfig(
            name=NODE_RESULTS_STREAM,
            description="Node results flowing back to the orchestrator.",
            subjects=["evt.node.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=7 * day,
            duplicate_window=settings.events_duplicate_window_s,
        ),
    ]
