"""Where a run's workflow comes from: the port `WorkflowSource` and its adapters.

`WorkflowsOverHttp` asks the workflows service (the caller's token: another user's workflow
is 404 there). `KeptWorkflows` keeps each workflow's current version in memory, kept current
by the workflow events on the bus, so a run costs no call: a version is immutable, so an entry
is good until an event says the workflow changed (updated, rolled back, deleted).

The window (docs/executions.md): a run uses the version current when it starts. The workflows
service answers a write only once its event is on the bus (shared/web/published_writes.py), and
the executor applies events as they arrive; while the executor is not subscribed (NATS down,
reconnecting) it asks the workflows service on every run, and clears what it kept when it
subscribes again. An entry older than `max_age_s` is asked for again, which bounds how long a
missed event (the workflows service unable to publish) could go unnoticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import httpx
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.executor import messages
from shared.bus.client import JetStreamBus
from shared.bus.streams import EVENTS_STREAM
from shared.errors import NotFound, ServiceUnavailable

log = logging.getLogger("agentflow.executor.workflows")

WORKFLOW_EVENTS_SUBJECT = "events.workflow.*.*"


class WorkflowNotFound(NotFound):
    default_code = "WORKFLOW_NOT_FOUND"
    default_message = messages.WORKFLOW_NOT_FOUND


class WorkflowsUnavailable(ServiceUnavailable):
    default_code = "UPSTREAM_UNAVAILABLE"
    default_message = messages.WORKFLOWS_DOWN


@dataclass(frozen=True)
class Caller:
    """Who asks, as the workflows service needs to know: their token, and who they are."""

    authorization: str
    user_id: UUID
    is_admin: bool


@dataclass
class RunnableWorkflow:
    """One version of a workflow, as a run pins it."""

    id: UUID
    owner_id: UUID
    name: str
    version: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    # Whether the graph passed validation: checked once per version (None: not yet).
    valid: bool | None = field(default=None, compare=False)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> RunnableWorkflow:
        return cls(
            id=UUID(str(body["id"])),
            owner_id=UUID(str(body["owner_id"])),
            name=str(body["name"]),
            version=int(body["version"]),
            nodes=list(body["nodes"]),
            edges=list(body["edges"]),
        )

    def visible_to(self, caller: Caller) -> bool:
        return caller.is_admin or self.owner_id == caller.user_id


class WorkflowSource(Protocol):
    async def current(self, workflow_id: UUID, caller: Caller) -> RunnableWorkflow:
        """The workflow's current version as the caller may see it; raises WorkflowNotFound
        (missing, deleted, or another user's) or WorkflowsUnavailable."""
        ...


class WorkflowsOverHttp:
    def __init__(self, http: httpx.AsyncClient, workflows_url: str) -> None:
        self._http = http
        self._url = workflows_url.rstrip("/")

    async def current(self, workflow_id: UUID, caller: Caller) -> RunnableWorkflow:
        url = f"{self._url}/api/v1/workflows/{workflow_id}"
        try:
            response = await self._http.get(url, headers={"authorization": caller.authorization})
        except httpx.HTTPError:
            raise WorkflowsUnavailable from None
        if response.status_code == 404:
            raise WorkflowNotFound
        if response.status_code != 200:
            raise WorkflowsUnavailable
        try:
            return RunnableWorkflow.from_body(response.json())
        except (ValueError, KeyError, TypeError):
            raise WorkflowsUnavailable from None


class KeptWorkflows:
    """`WorkflowSource` over another one, keeping what it answered until the bus says the
    workflow changed. Runs on the event loop only (no locks needed)."""

    def __init__(
        self,
        source: WorkflowSource,
        bus: JetStreamBus,
        *,
        max_entries: int = 10_000,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._bus = bus
        self._max_entries = max_entries
        self._max_age_s = max_age_s
        self._clock = clock
        self._kept: dict[UUID, tuple[RunnableWorkflow, float]] = {}
        # Bumped by every event of a workflow: an answer fetched across one is not kept.
        self._changes: dict[UUID, int] = {}
        self._subscription: Subscription | None = None
        self._connection = 0  # the bus connection the subscription was made on
        bus.on_connected(self._subscribe)

    @property
    def following(self) -> bool:
        """Whether workflow events reach this process now (else every run asks)."""
        if self._subscription is None or not self._bus.connected:
            return False
        # After a reconnect, nothing is followed until `_subscribe` ran on the new connection.
        return self._connection == self._bus.connections

    async def current(self, workflow_id: UUID, caller: Caller) -> RunnableWorkflow:
        following = self.following
        kept = self._kept.get(workflow_id) if following else None
        if kept is not None and self._clock() - kept[1] < self._max_age_s:
            workflow = kept[0]
            if not workflow.visible_to(caller):
                raise WorkflowNotFound
            return workflow
        changes = self._changes.get(workflow_id, 0)
        workflow = await self._source.current(workflow_id, caller)
        if following and self.following and self._changes.get(workflow_id, 0) == changes:
            self._keep(workflow)
        return workflow

    def forget(self, workflow_id: UUID) -> None:
        self._kept.pop(workflow_id, None)
        self._changes[workflow_id] = self._changes.get(workflow_id, 0) + 1

    def __len__(self) -> int:
        return len(self._kept)

    def _keep(self, workflow: RunnableWorkflow) -> None:
        if len(self._kept) >= self._max_entries:
            # The oldest entry goes (dicts keep insertion order).
            self._kept.pop(next(iter(self._kept)))
        self._kept[workflow.id] = (workflow, self._clock())

    async def _subscribe(self, js: JetStreamContext) -> None:
        await self.close()
        self._kept.clear()  # events may have been missed while not subscribed
        self._changes.clear()
        self._subscription = await js.subscribe(
            WORKFLOW_EVENTS_SUBJECT,
            stream=EVENTS_STREAM,
            cb=self._on_event,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        self._connection = self._bus.connections

    async def _on_event(self, msg: Msg) -> None:
        # `events.workflow.<id>.<Type>`: every kind of change makes the kept copy stale.
        parts = msg.subject.split(".")
        try:
            self.forget(UUID(parts[2]))
        except (IndexError, ValueError):
            log.warning("skipped a workflow event on an unexpected subject %s", msg.subject)

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        self._connection = 0
        if subscription is not None:
            with contextlib.suppress(Exception):  # the old connection may be gone already
                await asyncio.wait_for(subscription.unsubscribe(), timeout=2)
