"""The executor's kept workflow versions against a real NATS server: a run asks the workflows
service once per version, and a workflow event on the bus makes the next run ask again."""

from __future__ import annotations

import asyncio
import uuid
from uuid import UUID

import pytest

from services.executor.settings import ExecutorSettings
from services.executor.workflow_source import (
    Caller,
    KeptWorkflows,
    RunnableWorkflow,
    WorkflowNotFound,
)
from shared.bus.client import JetStreamBus
from tests.support.processes import NatsServer, free_port

OWNER, OTHER = uuid.uuid4(), uuid.uuid4()


class WorkflowsService:
    """The port's other side: what the workflows service would answer, and how often it was
    asked (the figure under test)."""

    def __init__(self) -> None:
        self.versions: dict[UUID, RunnableWorkflow] = {}
        self.asked = 0

    def save(self, workflow_id: UUID, version: int) -> None:
        self.versions[workflow_id] = RunnableWorkflow(
            workflow_id, OWNER, "wf", version, [{"id": "start-1", "type": "start"}], []
        )

    async def current(self, workflow_id: UUID, caller: Caller) -> RunnableWorkflow:
        self.asked += 1
        workflow = self.versions.get(workflow_id)
        if workflow is None or not workflow.visible_to(caller):
            raise WorkflowNotFound
        return RunnableWorkflow(**{**workflow.__dict__, "valid": None})


def caller(user_id: UUID = OWNER, *, admin: bool = False) -> Caller:
    return Caller("Bearer t", user_id, admin)


async def connected_bus(nats_url: str) -> JetStreamBus:
    settings = ExecutorSettings(environment="test", jwt_secret="x" * 40, nats_url=nats_url)
    bus = JetStreamBus(settings, name="test-kept-workflows")
    bus.start()
    await bus.wait_ready(timeout=10)
    return bus


async def until(condition, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
async def bus(nats_server: NatsServer):
    connected = await connected_bus(nats_server.url)
    yield connected
    await connected.close()


async def test_a_version_is_asked_for_once_and_kept(bus: JetStreamBus) -> None:
    service, workflow_id = WorkflowsService(), uuid.uuid4()
    service.save(workflow_id, 1)
    kept = KeptWorkflows(service, bus)
    await until(lambda: kept.following)
    first = await kept.current(workflow_id, caller())
    again = await kept.current(workflow_id, caller())
    assert (first.version, again.version, service.asked) == (1, 1, 1)
    await kept.close()


async def test_another_users_workflow_is_not_found_even_when_kept(bus: JetStreamBus) -> None:
    service, workflow_id = WorkflowsService(), uuid.uuid4()
    service.save(workflow_id, 1)
    kept = KeptWorkflows(service, bus)
    await until(lambda: kept.following)
    await kept.current(workflow_id, caller())
    with pytest.raises(WorkflowNotFound):
        await kept.current(workflow_id, caller(OTHER))
    assert (await kept.current(workflow_id, caller(OTHER, admin=True))).version == 1
    await kept.close()


async def test_a_workflow_event_on_the_bus_makes_the_next_run_ask_again(
    bus: JetStreamBus,
) -> None:
    service, workflow_id = WorkflowsService(), uuid.uuid4()
    service.save(workflow_id, 1)
    kept = KeptWorkflows(service, bus)
    await until(lambda: kept.following)
    await kept.current(workflow_id, caller())
    service.save(workflow_id, 2)
    # What the workflows service's outbox publishes for the save.
    await bus.publish(
        f"events.workflow.{workflow_id}.WorkflowUpdated", b"{}", msg_id=f"{workflow_id}:2"
    )
    await until(lambda: len(kept) == 0)
    assert (await kept.current(workflow_id, caller())).version == 2
    assert service.asked == 2
    await kept.close()


async def test_an_old_entry_is_asked_for_again(bus: JetStreamBus) -> None:
    now = [0.0]
    service, workflow_id = WorkflowsService(), uuid.uuid4()
    service.save(workflow_id, 1)
    kept = KeptWorkflows(service, bus, max_age_s=60, clock=lambda: now[0])
    await until(lambda: kept.following)
    await kept.current(workflow_id, caller())
    now[0] = 61.0
    await kept.current(workflow_id, caller())
    assert service.asked == 2
    await kept.close()


async def test_without_the_bus_every_run_asks() -> None:
    settings = ExecutorSettings(
        environment="test", jwt_secret="x" * 40, nats_url=f"nats://127.0.0.1:{free_port()}"
    )
    bus = JetStreamBus(settings, name="test-kept-workflows-down")
    service, workflow_id = WorkflowsService(), uuid.uuid4()
    service.save(workflow_id, 1)
    kept = KeptWorkflows(service, bus)
    for _ in range(3):
        await kept.current(workflow_id, caller())
    assert (kept.following, service.asked) == (False, 3)
