"""Answer a write only once its events are on the bus.

Other services keep copies kept current by those events (the executor keeps each workflow's
current version, services/executor/workflow_source.py). Holding the answer until the outbox
relay has published the write means that a client that saved a workflow and then runs it
runs what it saved. Bounded: if NATS cannot be reached the answer goes after `timeout_s`
anyway (the write is stored; the relay publishes it when it can).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.bus.outbox import OutboxRelay

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


class AnswerWritesWhenPublished:
    def __init__(self, app: ASGIApp, relay: OutboxRelay, timeout_s: float = 2.0) -> None:
        self.app = app
        self.relay = relay
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _READS:
            await self.app(scope, receive, send)
            return

        async def send_when_published(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await self.relay.flushed(self.timeout_s)
            await send(message)

        await self.app(scope, receive, send_when_published)
