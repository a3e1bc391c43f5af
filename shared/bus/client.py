"""A JetStream connection that survives NATS starting late, restarting, or going away.

- The first connect is retried with backoff (nats-py does not retry it), forever until closed.
- Streams are declared idempotently on every (re)connect: a NATS restarted with an empty store
  gets them back.
- Callbacks registered with `on_connected` run after every (re)connect, so pull consumers can
  be rebuilt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from shared.bus.streams import stream_configs
from shared.settings import PlatformSettings

log = logging.getLogger("agentflow.bus")

ConnectedCallback = Callable[[JetStreamContext], Awaitable[None]]


@dataclass(frozen=True)
class OutgoingMessage:
    subject: str
    payload: bytes
    msg_id: str
    headers: dict[str, str] = field(default_factory=dict)


class BusUnavailable(ConnectionError):
    """NATS cannot be reached right now; the caller retries later."""


class JetStreamBus:
    def __init__(self, settings: PlatformSettings, *, name: str) -> None:
        self._settings = settings
        self._name = name
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._callbacks: list[ConnectedCallback] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._connector: asyncio.Task[None] | None = None
        # Counts (re)connections: a follower of the bus knows whether its subscription is on
        # the connection that is up now or was made before a disconnect.
        self.connections = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the service serves HTTP meanwhile (readyz says not yet)."""
        if self._connector is None:
            self._connector = asyncio.create_task(self._connect_forever(), name="bus-connect")

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def close(self) -> None:
        self._closing = True
        if self._connector is not None:
            self._connector.cancel()
            await asyncio.gather(self._connector, return_exceptions=True)
        if self._nc is not None and not self._nc.is_closed:
            try:
                await asyncio.wait_for(self._nc.drain(), timeout=5)
            except Exception:  # closing anyway; a drain that fails must not block shutdown
                await self._nc.close()
        self._ready.clear()

    def on_connected(self, callback: ConnectedCallback) -> None:
        """Run `callback(js)` now if connected and after every reconnect."""
        self._callbacks.append(callback)
        if self._js is not None and self.connected:
            asyncio.get_running_loop().create_task(self._run_callback(callback, self._js))

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected and self._ready.is_set()

    @property
    def js(self) -> JetStreamContext:
        if self._js is None or not self.connected:
            raise BusUnavailable("not connected to NATS")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None:
            raise BusUnavailable("not connected to NATS")
        return self._nc

    # -- operations --------------------------------------------------------------------------

    async def publish(
        self, subject: str, payload: bytes, *, msg_id: str, headers: dict[str, str] | None = None
    ) -> PubAck:
        all_headers = {"Nats-Msg-Id": msg_id, **(headers or {})}
        try:
            return await self.js.publish(subject, payload, headers=all_headers, timeout=5)
        except BusUnavailable:
            raise
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            raise BusUnavailable(f"publish to {subject} failed: {exc!r}") from exc

    async def publish_batch(
        self, messages: list[OutgoingMessage], *, timeout: float = 10.0
    ) -> list[PubAck]:
        """Publish in order without waiting for each ack in turn; then wait for all acks.

        The messages are written to the connection one after another, so JetStream stores
        them in this order; acks are awaited together. Any failure fails the whole batch,
        which the caller re-sends (deduplicated by `Nats-Msg-Id`).
        """
        js = self.js
        futures: list[asyncio.Future[PubAck]] = []
        try:
            for message in messages:
                headers = {"Nats-Msg-Id": message.msg_id, **message.headers}
                futures.append(
                    await js.publish_async(message.subject, message.payload, headers=headers)
                )
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout))
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            for future in futures:
                future.cancel()
            raise BusUnavailable(f"batch publish failed: {exc!r}") from exc

    async def ping(self) -> bool:
        if not self.connected:
            return False
        try:
            await self.nc.flush(timeout=2)
        except Exception:
            return False
        return True

    # -- internals ---------------------------------------------------------------------------

    async def _connect_forever(self) -> None:
        delay = 0.1
        while not self._closing:
            try:
                nc = await nats.connect(
                    servers=[self._settings.nats_url],
                    name=self._name,
                    connect_timeout=self._settings.nats_connect_timeout_s,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    reconnected_cb=self._on_reconnected,
                    disconnected_cb=self._on_disconnected,
                    error_cb=self._on_error,
                )
            except (NoServersError, OSError, TimeoutError, nats.errors.Error) as exc:
                log.warning("NATS at %s not reachable yet (%r); retrying", self._redacted_url, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._nc = nc
            self._js = nc.jetstream()
            if await self._after_connect():
                return
            # Streams could not be declared (JetStream off or unready): reconnect from scratch.
            await nc.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _after_connect(self) -> bool:
        assert self._js is not None
        try:
            await ensure_streams(self._js, stream_configs(self._settings))
        except Exception as exc:
            log.warning("declaring JetStream streams failed: %r", exc)
            self._ready.clear()
            return False
        self.connections += 1
        self._ready.set()
        log.info("connected to NATS at %s", self._redacted_url)
        for callback in list(self._callbacks):
            await self._run_callback(callback, self._js)
        return True

    async def _run_callback(self, callback: ConnectedCallback, js: JetStreamContext) -> None:
        try:
            await callback(js)
        except Exception:
            log.exception("bus on_connected callback failed")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS")
        # A restarted server may have lost its streams; declare them again, then rebuild.
        if not await self._after_connect():
            asyncio.get_running_loop().call_later(1.0, self._retry_after_connect)

    def _retry_after_connect(self) -> None:
        if self._closing or self._nc is None or not self._nc.is_connected:
            return

        async def retry() -> None:
            if not await self._after_connect():
                asyncio.get_running_loop().call_later(1.0, self._retry_after_connect)

        asyncio.get_running_loop().create_task(retry())

    async def _on_disconnected(self) -> None:
        if not self._closing:
            log.warning("disconnected from NATS; reconnecting")
        self._ready.clear()

    async def _on_error(self, exc: Exception) -> None:
        if not self._closing:
            log.debug("NATS client error: %r", exc)

    @property
    def _redacted_url(self) -> str:
        url = self._settings.nats_url
        if "@" in url:  # user:password@host must never reach the logs
            scheme, _, rest = url.partition("://")
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return url


async def ensure_streams(js: JetStreamContext, configs: list[StreamConfig]) -> None:
    """Create each stream, or bring an existing one's mutable settings up to date."""
    for config in configs:
        try:
            info = await js.stream_info(config.name or "")
        except NotFoundError:
            try:
                await js.add_stream(config)
                continue
            except BadRequestError:
                # Another service created it between our look and our add.
                info = await js.stream_info(config.name or "")
        if _differs(info.config, config):
            try:
                await js.update_stream(config)
            except BadRequestError as exc:  # e.g. retention cannot change after creation
                log.warning("stream %s kept its old settings: %s", config.name, exc)


def _differs(current: StreamConfig, wanted: StreamConfig) -> bool:
    fields: tuple[str, ...] = (
        "subjects",
        "max_age",
        "max_bytes",
        "duplicate_window",
        "num_replicas",
    )
    current_values: dict[str, Any] = {f: getattr(current, f) for f in fields}
    wanted_values: dict[str, Any] = {f: getattr(wanted, f) for f in fields}
    return current_values != wanted_values
