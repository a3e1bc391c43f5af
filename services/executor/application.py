"""The executor's commands and queries: start, cancel and resume a run, read it and its logs.

A run starts here: `start` takes the workflow's current version from the `WorkflowSource` port
(services/executor/workflow_source.py), checks it and the caller's limits, records the
execution, and asks the `RunScheduler` (the orchestrator, services/executor/orchestrator.py) to
carry it on. Commands take ids and plain data and return ids and views.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Recording

from services.executor import messages
from services.executor.domain import (
    FINAL_STATUSES,
    NODE_FINISHED_LINE,
    NODE_STARTED_LINE,
    Execution,
    ExecutionStatus,
)
from services.executor.metrics import count_execution_event
from services.executor.settings import ExecutorSettings
from services.executor.workflow_source import Caller, RunnableWorkflow, WorkflowSource
from shared.errors import Conflict, NotFound, PayloadTooLarge, ValidationFailed
from shared.eventstore import EventSourcedApplication
from shared.i18n import Language, Message
from shared.tracing import inject_headers
from shared.workflow.model import WorkflowGraph
from shared.workflow.validation import validate_workflow

if TYPE_CHECKING:  # typing only: the limits read the execution list, which reads this application
    from services.executor.limits import ExecutionLimits

# input_data is stored in the run's first event, beside the workflow (at most 3 MiB), and is
# handed to every worker node with its inputs (a NATS message holds at most 1 MB): far more
# than a run's input needs, and a bound on what one start may store.
MAX_INPUT_BYTES = 1024 * 1024


log = logging.getLogger("agentflow.executor.runs")


def _log_finished(execution: Execution) -> None:
    """The one line a run writes at the default level: what an operator looks for."""
    log.info(
        "execution %s %s: workflow %s v%d, %s ms",
        execution.id,
        execution.status,
        execution.workflow_id,
        execution.workflow_version,
        execution.execution_time_ms,
    )


class ExecutionNotFound(NotFound):
    default_code = "EXECUTION_NOT_FOUND"
    default_message = messages.EXECUTION_NOT_FOUND


class WorkflowInvalid(ValidationFailed):
    default_code = "INVALID_WORKFLOW"
    default_message = messages.WORKFLOW_INVALID


class InputTooLarge(PayloadTooLarge):
    default_code = "INPUT_TOO_LARGE"
    default_message = Message(
        "input_data 过大:{size} 字节(最多 {limit})",
        "input_data is too large: {size} bytes (at most {limit})",
    )


class ExecutionFinished(Conflict):
    default_code = "EXECUTION_FINISHED"
    default_message = messages.EXECUTION_FINISHED


class NotResumable(Conflict):
    default_code = "EXECUTION_NOT_RESUMABLE"
    default_message = messages.NOT_RESUMABLE


@dataclass(frozen=True)
class Actor:
    """Who asks: the verified caller, and the token other services check themselves."""

    user_id: UUID
    name: str
    is_admin: bool
    token: str = ""

    @property
    def owner_filter(self) -> UUID | None:
        """Whose executions the actor may see: their own, or (an admin) everyone's."""
        return None if self.is_admin else self.user_id


@dataclass(frozen=True)
class StatusView:
    status: ExecutionStatus
    progress: int
    current_node: str | None


class RunScheduler(Protocol):
    """Carries runs on after a command changed them (the orchestrator)."""

    def kick(self, execution_id: UUID) -> None: ...

    def kick_from_thread(self, execution_id: UUID) -> None: ...


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
    def __init__(
        self,
        settings: ExecutorSettings,
        env: dict[str, str] | None = None,
    ) -> None:
        # Every node result changes a running execution: keep running ones in memory and
        # read only their new events (fast-forward), instead of replaying whole histories.
        cache = {"AGGREGATE_CACHE_MAXSIZE": "2000", "AGGREGATE_CACHE_FASTFORWARD": "y"}
        super().__init__(settings, {**cache, **(env or {})})
        self._workflows: WorkflowSource | None = None
        self._limits: ExecutionLimits | None = None
        self._runs: RunScheduler | None = None

    def attach(
        self, *, workflows: WorkflowSource, limits: ExecutionLimits, runs: RunScheduler
    ) -> None:
        """Wire the ports (create_app builds them around this application: the kept
        workflows follow its bus, the limits count from its execution list, and the
        scheduler, the orchestrator, decides over its executions)."""
        self._workflows = workflows
        self._limits = limits
        self._runs = runs

    # -- commands ----------------------------------------------------------------------------

    async def start(
        self,
        actor: Actor,
        workflow_id: UUID,
        input_data: dict[str, Any],
        language: Language = "zh",
    ) -> UUID:
        """Run the workflow's current version for `actor`; returns the execution id at once,
        the run goes on in the background."""
        size = len(json.dumps(input_data, ensure_ascii=False).encode())
        if size > MAX_INPUT_BYTES:
            raise InputTooLarge(size=size, limit=MAX_INPUT_BYTES)
        assert self._workflows is not None, "wired in create_app"
        assert self._runs is not None, "wired in create_app"
        caller = Caller(f"Bearer {actor.token}", actor.user_id, actor.is_admin)
        workflow = await self._workflows.current(workflow_id, caller)
        await self._check_runnable(workflow, language)
        execution_id = await asyncio.to_thread(
            self._create_within_limits, actor.user_id, workflow, input_data
        )
        self._runs.kick(execution_id)
        return execution_id

    @staticmethod
    async def _check_runnable(workflow: RunnableWorkflow, language: Language) -> None:
        """Validate a version once (versions never change); an invalid one says why, in the
        caller's language, every time. Off the event loop: a large hostile graph takes a
        second to check, and the loop also dispatches every other user's nodes."""
        if workflow.valid:
            return
        graph = WorkflowGraph.model_validate({"nodes": workflow.nodes, "edges": workflow.edges})
        report = await asyncio.to_thread(validate_workflow, graph, language)
        workflow.valid = report.valid
        if not report.valid:
            raise WorkflowInvalid(
                summary="; ".join(issue.message for issue in report.errors[:3]),
                extra={"errors": [issue.model_dump() for issue in report.errors]},
            )

    def _create_within_limits(
        self, owner_id: UUID, workflow: RunnableWorkflow, input_data: dict[str, Any]
    ) -> UUID:
        assert self._limits is not None, "wired in create_app"
        with self._limits.lock(owner_id):
            self._limits.check(owner_id)
            try:
                return self.create(owner_id, workflow, input_data).id
            except BaseException:
                self._limits.forget(owner_id)
                raise

    def cancel(self, actor: Actor, execution_id: UUID) -> StatusView:
        """Stop a pending or running execution; results still in flight are then ignored."""
        self.get(execution_id, actor.owner_filter)
        by = actor.name or str(actor.user_id)

        def cancel(execution: Execution) -> bool:
            if not execution.cancel(by):
                raise ExecutionFinished(status=execution.status)
            execution.record_log("warn", f"执行已被 {by} 取消")
            return True

        return self.status_of(self.change(execution_id, cancel))

    def resume(self, actor: Actor, execution_id: UUID) -> StatusView:
        """Carry a failed execution on from the node that failed (call from a thread)."""
        self.get(execution_id, actor.owner_filter)
        by = actor.name or str(actor.user_id)

        def resume(execution: Execution) -> bool:
            if not execution.resume(by):
                raise NotResumable(status=execution.status)
            execution.record_log("info", f"执行已被 {by} 从失败处恢复")
            return True

        execution = self.change(execution_id, resume)
        assert self._runs is not None, "wired in create_app"
        self._runs.kick_from_thread(execution_id)
        return self.status_of(execution)

    # -- queries -----------------------------------------------------------------------------

    def visible(self, actor: Actor, execution_id: UUID) -> Execution:
        """The execution if the actor may see it; another user's answers as missing."""
        return self.get(execution_id, actor.owner_filter)

    def status(self, actor: Actor, execution_id: UUID) -> StatusView:
        return self.status_of(self.visible(actor, execution_id))

    @staticmethod
    def status_of(execution: Execution) -> StatusView:
        return StatusView(execution.status, execution.progress, execution.current_node)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        for recording in recordings:
            count_execution_event(type(recording.domain_event).__qualname__)
        super()._notify(recordings)

    def create(
        self, owner_id: UUID, workflow: RunnableWorkflow, input_data: dict[str, Any]
    ) -> Execution:
        """Pin the workflow version as it is now, and record the execution as pending."""
        execution = Execution(
            owner_id,
            workflow.id,
            workflow.version,
            workflow.name,
            {"nodes": workflow.nodes, "edges": workflow.edges},
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
        """Every log line of an execution, oldest first, read from its events: the recorded
        lines, and the "started"/"finished" lines that node events stand for (domain.py)."""
        lines: list[LogLine] = []
        nodes: dict[str, tuple[str, str]] = {}  # run key -> node id, node type
        finished: LogLine | None = None  # goes after the lines its node's result brought

        def line(event: Any, level: str, message: str, node: tuple[str | None, str | None],
                 duration_ms: int | None) -> LogLine:  # fmt: skip
            return LogLine(
                id=uuid5(execution_id, str(event.originator_version)),
                node_id=node[0],
                node_type=node[1],
                level=level,
                message=message,
                timestamp=event.timestamp,
                duration_ms=duration_ms,
            )

        def after(line: LogLine, lines: list[LogLine]) -> LogLine:
            # Its node's result lines were recorded in the same save, a moment later.
            if lines and lines[-1].timestamp > line.timestamp:
                return replace(line, timestamp=lines[-1].timestamp)
            return line

        for domain_event in self.events.get(execution_id):
            kind = type(domain_event).__qualname__
            data: Any = domain_event
            recorded = kind == "Execution.LogRecorded"
            if finished is not None and not (recorded and data.node_id == finished.node_id):
                lines.append(after(finished, lines))
                finished = None
            if recorded:
                node = (data.node_id, data.node_type)
                lines.append(line(data, data.level, data.message, node, data.duration_ms))
            elif kind == "Execution.NodeStarted":
                nodes[data.run_key] = (data.node_id, data.node_type)
                if getattr(data, "log_line", False):
                    node = nodes[data.run_key]
                    lines.append(line(data, "info", NODE_STARTED_LINE, node, None))
            elif kind == "Execution.NodeCompleted" and getattr(data, "log_line", False):
                node = nodes.get(data.run_key, (None, None))
                finished = line(data, "info", NODE_FINISHED_LINE, node, data.duration_ms)
        if finished is not None:
            lines.append(after(finished, lines))
        return lines

    def change(self, execution_id: UUID, command: Callable[[Execution], bool]) -> Execution:
        """Apply `command` to fresh state and save what it recorded; retried on a conflict,
        so concurrent results (parallel branches) are all kept."""

        def attempt() -> Execution:
            execution = self.get(execution_id)
            was_going = execution.status not in FINAL_STATUSES
            if command(execution):
                self.save(execution)
                if was_going and execution.status in FINAL_STATUSES:
                    _log_finished(execution)
            return execution

        return self.retry_on_conflict(attempt)
