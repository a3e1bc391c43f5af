"""The executor's commands and queries over the `Execution` aggregate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Recording

from services.executor import messages
from services.executor.domain import Execution
from services.executor.metrics import count_execution_event
from services.executor.settings import ExecutorSettings
from shared.errors import NotFound
from shared.eventstore import EventSourcedApplication
from shared.tracing import inject_headers


class ExecutionNotFound(NotFound):
    default_code = "EXECUTION_NOT_FOUND"
    default_message = messages.EXECUTION_NOT_FOUND


@dataclass(frozen=True)
class LogLine:
    id: UUID
    node_id: str | None
    node_type: str | None
    level: str
    message: str
    timestamp: datetime
    duration_ms: int | None


class ExecutorApplication(EventSourcedApplication):
    def __init__(self, settings: ExecutorSettings, env: dict[str, str] | None = None) -> None:
        # Every node result changes a running execution: keep running ones in memory and
        # read only their new events (fast-forward), instead of replaying whole histories.
        cache = {"AGGREGATE_CACHE_MAXSIZE": "2000", "AGGREGATE_CACHE_FASTFORWARD": "y"}
        super().__init__(settings, {**cache, **(env or {})})

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for recording in recordings:
            count_execution_event(type(recording.domain_event).__qualname__)
        super()._notify(recordings)

    def create(
        self,
        owner_id: UUID,
        workflow: dict[str, Any],
        input_data: dict[str, Any],
    ) -> Execution:
        """Pin the workflow version as it is now, and record the execution as pending."""
        execution = Execution(
            owner_id,
            UUID(str(workflow["id"])),
            int(workflow["version"]),
            str(workflow["name"]),
            {"nodes": workflow["nodes"], "edges": workflow["edges"]},
            input_data,
            dict(inject_headers({})),
        )
        self.save(execution)
        return execution

    def get(self, execution_id: UUID, owner_id: UUID | None = None) -> Execution:
        """The execution; another owner's answers as missing (`owner_id` None: any owner)."""
        try:
            execution: object = self.repository.get(execution_id)
        except AggregateNotFoundError:
            raise ExecutionNotFound from None
        if not isinstance(execution, Execution):
            raise ExecutionNotFound
        if owner_id is not None and execution.owner_id != owner_id:
            raise ExecutionNotFound
        return execution

    def logs(self, execution_id: UUID) -> list[LogLine]:
        """Every log line of an execution, oldest first, read from its events."""
        lines: list[LogLine] = []
        for domain_event in self.events.get(execution_id):
            if type(domain_event).__qualname__ != "Execution.LogRecorded":
                continue
            data: Any = domain_event
            lines.append(
                LogLine(
                    id=uuid5(execution_id, str(data.originator_version)),
                    node_id=data.node_id,
                    node_type=data.node_type,
                    level=data.level,
                    message=data.message,
                    timestamp=data.timestamp,
                    duration_ms=data.duration_ms,
                )
            )
        return lines

    def change(self, execution_id: UUID, command: Callable[[Execution], bool]) -> Execution:
        """Apply `command` to fresh state and save what it recorded; retried on a conflict,
        so concurrent results (parallel branches) are all kept."""

        def attempt() -> Execution:
            execution = self.get(execution_id)
            if command(execution):
                self.save(execution)
            return execution

        return self.retry_on_conflict(attempt)
