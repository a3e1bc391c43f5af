"""`/api/v1/ws/executions/{id}`: an execution's changes, pushed as they happen.

The token comes in the `Sec-WebSocket-Protocol` header, as a browser can send it
(`new WebSocket(url, ["bearer", token])`; the handshake answers with the subprotocol
`bearer`, never the token), or as `?token=` (the seed's clients). Either way it stays out of
the logs (shared/logging.py redacts query strings and JWTs).

On connect: the current state at once (the one read of the execution). Then one message per
change of the execution (from the `EVENTS` stream) followed by the fresh status (once for
changes that arrive together, as the events of one save do), until the final message, after
which the socket closes. The gateway subscribes before it reads the state, so no change falls
between the two.

The statuses and the final message are built from the events (services/gateway/
execution_view.py), not by reading the execution again: events are taken in the order of
their per-aggregate `version`, and one whose version is not above the highest seen is a
repeat, dropped. A change that the read on connect already held is still passed on (it was
seen twice: it only repeats a status). The execution is read again only when the events cannot
tell: a version was skipped (an event was missed), an output too large to travel with its
event, the top-level nodes unknown (progress), or 15 s without news.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

import nats.errors
from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from nats.aio.msg import Msg

from services.gateway import messages
from services.gateway.execution_view import FINAL_STATUSES, ExecutionView, top_level_of
from services.gateway.proxy import UpstreamClient
from services.gateway.socket_quota import SocketQuota
from shared.bus.client import BusUnavailable, JetStreamBus
from shared.bus.streams import EVENTS_STREAM, event_subject
from shared.errors import AppError, NotFound
from shared.i18n import pick_language
from shared.security.tokens import TokenService
from shared.web.errors import error_body

log = logging.getLogger("agentflow.gateway.live")

# A bad or missing token, an execution that does not exist or is not the caller's (or an id
# that is no execution id at all), or one socket more than the user may hold open, refuse the
# handshake with an HTTP 401/404/429 of the documented error shape (the same 404 in every
# such case); servers without that ASGI extension close with 4401/4404/4429 instead.
# 1013: try again later.
BEARER_SUBPROTOCOL = "bearer"
_FINAL = {"ExecutionCompleted": "completed", "ExecutionFailed": "failed",
          "ExecutionCancelled": "cancelled"}  # fmt: skip
_MESSAGE_TYPES = {
    "ExecutionStarted": "started",
    "NodeStarted": "node_started",
    "NodeCompleted": "node_completed",
    "NodeFailed": "node_failed",
    "NodeSkipped": "node_skipped",
}
# Passed on as they come, with no fresh status after them (they change no status).
_NEWS_TYPES = {
    "ExecutionLogRecorded": "log",
    "IterationStarted": "iteration_started",
    "IterationFinished": "iteration_finished",
}
LIVE_ONLY = frozenset({"llm_chunk"})  # core NATS `live.execution.<id>`, never stored
# What node events carry for the socket itself (an output, a log line it stands for): sent as
# messages of their own, never inside `node_started` / `node_completed`.
_CARRIED = frozenset({"output", "log"})


async def execution_socket(
    websocket: WebSocket,
    execution_id: str,
    tokens: TokenService,
    upstreams: UpstreamClient,
    bus: JetStreamBus,
    quota: SocketQuota,
) -> None:
    token, subprotocol = credentials(websocket)
    try:
        principal = tokens.verify(token)
    except AppError as error:
        await _refuse(websocket, error, 4401)
        return
    # The id becomes part of NATS subjects: only a UUID may (`>`, `*`, `.` are wildcards or
    # separators there). Anything else names no execution.
    canonical_id = canonical_execution_id(execution_id)
    if canonical_id is None:
        await _refuse(websocket, _NoSuchExecution(), 4404)
        return
    try:
        quota.acquire(principal.user_id)
    except AppError as error:
        await _refuse(websocket, error, 4429)
        return
    try:
        await _serve(websocket, canonical_id, token, subprotocol, upstreams, bus)
    finally:
        quota.release(principal.user_id)


def credentials(websocket: WebSocket) -> tuple[str, str | None]:
    """The token, and the subprotocol to accept with: the entry after `bearer` among the
    offered subprotocols, else the `token` query parameter (no subprotocol)."""
    offered: list[str] = list(websocket.scope.get("subprotocols") or [])
    if BEARER_SUBPROTOCOL in offered:
        at = offered.index(BEARER_SUBPROTOCOL)
        token = offered[at + 1] if at + 1 < len(offered) else ""
        return token, BEARER_SUBPROTOCOL
    return websocket.query_params.get("token", ""), None


def canonical_execution_id(execution_id: str) -> str | None:
    try:
        return str(uuid.UUID(execution_id))
    except ValueError:
        return None


async def _serve(
    websocket: WebSocket,
    execution_id: str,
    token: str,
    subprotocol: str | None,
    upstreams: UpstreamClient,
    bus: JetStreamBus,
) -> None:
    reader = ExecutionReader(upstreams, execution_id, token)
    changes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def on_event(message: Msg) -> None:
        with contextlib.suppress(ValueError):
            await changes.put(json.loads(message.data))

    try:
        subscription = await bus.nc.subscribe(f"events.execution.{execution_id}.>", cb=on_event)
        chunks = await bus.nc.subscribe(f"live.execution.{execution_id}", cb=on_event)
    except (BusUnavailable, ValueError):
        await websocket.close(code=1013, reason="live updates unavailable")
        return
    try:
        record = await reader.read()
        if record is None:
            await _refuse(websocket, _NoSuchExecution(), 4404)
            return
        await websocket.accept(subprotocol=subprotocol)
        view = ExecutionView.of(record)
        await websocket.send_json({"type": "status", "data": view.status_data()})
        if view.status in FINAL_STATUSES:
            await websocket.send_json(view.final_message())
            await websocket.close()
            return
        view.top_level = await _top_level_nodes(bus, execution_id)
        await _follow_while_open(websocket, _follow(websocket, changes, view, reader))
    except WebSocketDisconnect:
        pass
    except _ExecutorDown:
        with contextlib.suppress(Exception):
            await websocket.close(code=1013, reason="executor unavailable")
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        with contextlib.suppress(Exception):
            await chunks.unsubscribe()


async def _top_level_nodes(bus: JetStreamBus, execution_id: str) -> frozenset[str] | None:
    """The ids of the run's top-level nodes (progress counts them), from its ExecutionCreated
    on `EVENTS`; None when that cannot be read (then progress is read with the status)."""
    subject = event_subject("execution", execution_id, "ExecutionCreated")
    try:
        message = await bus.js.get_last_msg(EVENTS_STREAM, subject)
        envelope = json.loads(message.data or b"")
    except (BusUnavailable, nats.errors.Error, TimeoutError, ValueError):
        return None  # not published yet (it comes on the subscription), or NATS is away
    return top_level_of(envelope.get("data") if isinstance(envelope, dict) else None)


async def _follow_while_open(websocket: WebSocket, follow: Coroutine[Any, Any, None]) -> None:
    """Run `follow` until it ends or the client goes away, whichever is first: a closed socket
    gives back its subscriptions and its place in the user's quota at once, not at the next
    message the gateway fails to send (up to 15 s away on a quiet run)."""
    following = asyncio.create_task(follow)
    watching = asyncio.create_task(_until_closed(websocket))
    try:
        await asyncio.wait({following, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (following, watching):
            task.cancel()
        await asyncio.gather(following, watching, return_exceptions=True)
    if following.done() and not following.cancelled():
        following.result()  # what ended it: _ExecutorDown, WebSocketDisconnect, or nothing


async def _until_closed(websocket: WebSocket) -> None:
    """Returns when the client closes the socket. Clients send nothing; whatever they do
    send is dropped."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass


async def _follow(
    websocket: WebSocket,
    changes: asyncio.Queue[dict[str, Any]],
    view: ExecutionView,
    reader: ExecutionReader,
) -> None:
    while True:
        try:
            first = await asyncio.wait_for(changes.get(), timeout=15)
        except TimeoutError:
            # No news for a while: look again, in case an event was missed (e.g. NATS blipped).
            record = await reader.read()
            if record is None:
                break
            view.reset(record)
            await websocket.send_json({"type": "status", "data": view.status_data()})
            if view.status in FINAL_STATUSES:
                await websocket.send_json(view.final_message())
                break
            continue
        # One save stores many events (a stretch of control nodes is one decision), and they
        # arrive together: pass them all on, then one status for the burst.
        burst = [first]
        while not changes.empty():
            burst.append(changes.get_nowait())
        if await _pass_on(websocket, burst, view, reader):
            break
    await websocket.close()


async def _pass_on(
    websocket: WebSocket,
    burst: list[dict[str, Any]],
    view: ExecutionView,
    reader: ExecutionReader,
) -> bool:
    """Send a burst of changes in order, then the fresh status; True after the final one.

    The status comes from the events themselves (`view`); the execution is read again only
    when they cannot tell it: an event was missed, an output was too large to travel with
    its event, or the top-level nodes (for progress) are not known."""
    burst = [e for e in burst if e.get("type") in LIVE_ONLY or view.is_new(e)]
    for envelope in burst:
        if envelope.get("type") not in LIVE_ONLY:
            view.fold(envelope)
    kinds = [envelope.get("type", "") for envelope in burst]
    wants_status = any(kind in _MESSAGE_TYPES or kind in _FINAL for kind in kinds)
    record = None
    if wants_status and (view.stale or any(map(_lacks_payload, burst))):
        record = await reader.read()
        if record is None:
            return True
        view.reset(record)
    # A node's "finished" log line goes after the lines its result brought (the order of
    # `GET /api/v1/execution-logs/...`, services/executor/application.py `logs`).
    finished: dict[str, Any] | None = None
    for kind, envelope in zip(kinds, burst, strict=True):
        data = envelope.get("data") or {}
        if finished is not None and not (
            kind == "ExecutionLogRecorded" and data.get("node_id") == finished["data"]["node_id"]
        ):
            await websocket.send_json(finished)
            finished = None
        if kind in LIVE_ONLY:
            await websocket.send_json(envelope)
        elif kind in _NEWS_TYPES:
            await websocket.send_json({"type": _NEWS_TYPES[kind], "data": data})
        elif kind in _MESSAGE_TYPES:
            public = {key: value for key, value in data.items() if key not in _CARRIED}
            await websocket.send_json({"type": _MESSAGE_TYPES[kind], "data": public})
            if kind == "NodeCompleted":
                await websocket.send_json(_node_output(data, view, record))
            line = _log_line(kind, data, view)
            if line is not None and kind == "NodeCompleted":
                finished = line
            elif line is not None:
                await websocket.send_json(line)
    if finished is not None:
        await websocket.send_json(finished)
    if not wants_status:
        return False
    await websocket.send_json({"type": "status", "data": view.status_data()})
    if any(kind in _FINAL for kind in kinds):
        await websocket.send_json(view.final_message())
        return True
    return False


def _lacks_payload(envelope: dict[str, Any]) -> bool:
    """An event whose message needs what it does not carry (left out for its size, or
    published before events carried it)."""
    kind, data = envelope.get("type"), envelope.get("data") or {}
    return (kind == "NodeCompleted" and "output" not in data) or (
        kind == "ExecutionCompleted" and "output_data" not in data
    )


def _node_output(
    data: dict[str, Any], view: ExecutionView, record: dict[str, Any] | None
) -> dict[str, Any]:
    run_key = str(data.get("run_key", ""))
    if "output" in data:
        output = data["output"]
    else:
        output = ((record or {}).get("nodes") or {}).get(run_key, {}).get("output")
    node_id, _ = view.node_of(run_key)
    return {"type": "node_output", "data": {"node_id": node_id, "output": output}}


def _log_line(kind: str, data: dict[str, Any], view: ExecutionView) -> dict[str, Any] | None:
    """The log line a node's start or success stands for (its event says so), as a `log`."""
    line = data.get("log")
    if not isinstance(line, dict):
        return None
    node_id, node_type = view.node_of(str(data.get("run_key", "")))
    return {
        "type": "log",
        "data": {
            "execution_id": data.get("execution_id"),
            "level": line.get("level"),
            "message": line.get("message"),
            "node_id": data.get("node_id", node_id),
            "node_type": data.get("node_type", node_type),
            "duration_ms": data.get("duration_ms") if kind == "NodeCompleted" else None,
        },
    }


class _ExecutorDown(Exception):
    pass


class _NoSuchExecution(NotFound):
    default_code = "EXECUTION_NOT_FOUND"  # as GET /api/v1/executions/{id} says it
    default_message = messages.EXECUTION_NOT_FOUND


async def _refuse(websocket: WebSocket, error: AppError, close_code: int) -> None:
    """Refuse the handshake: an HTTP error answer where the server can send one, else a close."""
    if "websocket.http.response" not in (websocket.scope.get("extensions") or {}):
        await websocket.close(code=close_code, reason=error.error_code)
        return
    language = pick_language(websocket.headers.get("accept-language"))
    body = error_body(error.status_code, error.error_code, error.detail(language), **error.extra)
    await websocket.send_denial_response(
        JSONResponse(body, status_code=error.status_code, headers=error.headers or None)
    )


class ExecutionReader:
    """Reads the execution from the executor as the caller (`GET /api/v1/executions/{id}`)."""

    def __init__(self, upstreams: UpstreamClient, execution_id: str, token: str) -> None:
        self._upstreams = upstreams
        self._path = f"/api/v1/executions/{execution_id}"
        self._headers = {"authorization": f"Bearer {token}"}

    async def read(self, patience_s: float = 15.0) -> Any:
        """The execution record; None when it does not exist for this caller. A busy or
        restarting executor is asked again, backing off, for up to `patience_s` before the
        socket is given up (closed with 1013, try again later)."""
        delay, waited = 0.25, 0.0
        while True:
            answer = await self._upstreams.read("executor", self._path, self._headers)
            if answer is not None and answer[0] == 404:
                return None
            if answer is not None and answer[0] == 200:
                return json.loads(answer[1])
            if waited >= patience_s:
                raise _ExecutorDown
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 2.0)
