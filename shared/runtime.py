"""What every event-sourced service runs beside its HTTP routes: the bus and the outbox relay."""

from __future__ import annotations

import asyncio

from shared.bus.client import JetStreamBus
from shared.bus.outbox import OutboxRelay, Translator
from shared.eventstore import EventSourcedApplication
from shared.readmodel import Projection, ProjectionRunner
from shared.web.health import DependencyCheck


class ServiceRuntime:
    def __init__(
        self, application: EventSourcedApplication, translate: Translator, *, source: str
    ) -> None:
        self.application = application
        self.bus = JetStreamBus(application.settings, name=f"agentflow-{source}")
        self.relay = OutboxRelay(application, self.bus, translate, source=source)
        self._projections: list[ProjectionRunner] = []

    def add_projection(self, projection: Projection, poll_s: float = 2.0) -> None:
        self._projections.append(ProjectionRunner(projection, self.application, poll_s))

    async def start(self) -> None:
        self.bus.start()
        self.relay.start()
        for runner in self._projections:
            runner.start()

    async def stop(self) -> None:
        for runner in self._projections:
            await runner.stop()
        await self.relay.stop()
        await self.bus.close()
        await asyncio.to_thread(self.application.close)

    def dependencies(self) -> dict[str, DependencyCheck]:
        """What `/diagnostics` and `agentflow_dependency_up` report (not readiness, ADR 0008)."""

        async def store() -> bool:
            return await asyncio.to_thread(self.application.store_is_reachable)

        return {"store": store, "nats": self.bus.ping}
