"""A durable JetStream pull consumer that rebuilds itself after every reconnect.

nats-py's pull subscriptions do not survive a reconnect (a restarted server forgets the
client's inbox), so the subscription and its fetch loop are made anew on each connect.
The durable consumer on the server keeps the position, so nothing is skipped; handlers must be
idempotent because a message whose ack was lost is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from shared.bus.client import JetStreamBus
from shared.bus.streams import durable_consumer

log = logging.getLogger("agentflow.bus.consumer")

Handler = Callable[[Msg], Awaitable[None]]


class PullConsumer:
    def __init__(
        self,
        bus: JetStreamBus,
        *,
        stream: str,
        durable: str,
        subject: str,
        handler: Handler,
        batch: int = 32,
        ack_wait_s: float = 30.0,
        max_deliver: int = -1,
        retry_delay_s: float = 1.0,
        concurrency: int = 1,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._durable = durable
        self._subject = subject
        self._handler = handler
        self._batch = batch
        self._retry_delay_s = retry_delay_s
        # Messages handled at once; a message is fetched only when a slot is free, so none
        # waits in this process while its ack timer runs.
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._in_flight: set[asyncio.Task[None]] = set()
        self._config = durable_consumer(
            durable, subject, ack_wait_s=ack_wait_s, max_deliver=max_deliver
        )
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._registered = False
        self._restart: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Consume from now on (again after `stop`: a partition's owner may lose it and gain
        it back); rebuilt after every reconnect."""
        self._stopped = False
        if not self._registered:
            self._registered = True
            self._bus.on_connected(self._rebuild)
        elif self._bus.connected:
            self._restart = asyncio.create_task(self._rebuild_now())

    async def _rebuild_now(self) -> None:
        while not self._stopped and self._bus.connected:
            try:
                await self._rebuild(self._bus.js)
                return
            except Exception as exc:  # NATS went away meanwhile: the next connect rebuilds us
                log.warning("consumer %s not rebuilt yet: %r", self._durable, exc)
                await asyncio.sleep(self._retry_delay_s)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop taking messages; let the ones in hand finish within `grace_s` (None: wait
        for them all), then give the rest back to JetStream (nak), so another consumer of
        the durable takes them at once instead of after the ack wait."""
        self._stopped = True
        if self._restart is not None:
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        await self._cancel_loop()
        if not self._in_flight:
            return
        pending = set(self._in_flight)
        if grace_s is not None:
            _, pending = await asyncio.wait(pending, timeout=grace_s)
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _rebuild(self, js: JetStreamContext) -> None:
        if self._stopped:
            return
        await self._cancel_loop()
        subscription = await js.pull_subscribe(
            self._subject, durable=self._durable, stream=self._stream, config=self._config
        )
        if self._stopped:  # stopped while subscribing
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            return
        self._loop_task = asyncio.create_task(
            self._fetch_loop(subscription), name=f"consumer-{self._durable}"
        )
        log.info("consumer %s on %s (re)built", self._durable, self._subject)

    async def _cancel_loop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None

    async def _fetch_loop(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            while True:
                if self._concurrency == 1:
                    for message in await self._fetch(subscription, self._batch):
                        await self._handle(message)
                    continue
                free = await self._acquire_slots()
                try:
                    messages = await self._fetch(subscription, free)
                except BaseException:
                    for _ in range(free):
                        self._slots.release()
                    raise
                for _ in range(free - len(messages)):
                    self._slots.release()
                for message in messages:
                    task = asyncio.create_task(self._handle_in_slot(message))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _acquire_slots(self) -> int:
        """Wait for one free slot, then take every other free one (up to a batch)."""
        await self._slots.acquire()
        free = 1
        while free < min(self._batch, self._concurrency) and not self._slots.locked():
            await self._slots.acquire()
            free += 1
        return free

    async def _fetch(
        self, subscription: JetStreamContext.PullSubscription, count: int
    ) -> list[Msg]:
        try:
            return await subscription.fetch(count, timeout=1.0)
        except (NatsTimeout, TimeoutError):  # nats-py raises either when idle
            return []
        except Exception as exc:
            # Disconnected or the consumer vanished; the next connect rebuilds us.
            log.debug("fetch on %s failed: %r", self._durable, exc)
            await asyncio.sleep(0.5)
            return []

    async def _handle_in_slot(self, message: Msg) -> None:
        try:
            await self._handle(message)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(message.nak())  # released, not lost
            raise
        finally:
            self._slots.release()

    async def _handle(self, message: Msg) -> None:
        try:
            await self._handler(message)
        except Exception:
            log.exception("handler of %s failed; redelivering later", self._durable)
            with contextlib.suppress(Exception):
                await message.nak(delay=self._retry_delay_s)
            return
        with contextlib.suppress(Exception):  # a lost ack only means one more (idempotent) delivery
            await message.ack()
