"""`/api/v1/ws/executions/{id}`: an execution's changes, pushed as they happen.

The token comes in the `Sec-WebSocket-Protocol` header, as a browser can send it
(`new WebSocket(url, ["bearer", token])`; the handshake answers with the subprotocol
`bearer`, never the token), or as `?token=` (the seed's clients). Either way it stays out of
the logs (shared/logging.py redacts query strings and JWTs).

On connect: the current state at once. Then one message per change of the execution (from
the `EVENTS` stream) followed by the fresh status (once for changes that arrive together, as
the events of one save do), until the final message, after which the socket closes. The
gateway subscribes before it reads the state, so no change falls between the two; a change
seen twice only repeats a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

import httpx
from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from nats.aio.msg import Msg

from services.gateway import messages
from services.gateway.proxy import UpstreamClient
from services.gateway.socket_quota import SocketQuota
from shared.bus.client import BusUnavailable, JetStreamBus
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
    headers = {"authorization": f"Bearer {token}"}
    base = upstreams.base_url("executor") + f"/api/v1/executions/{execution_id}"
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
        record = await _fetch(upstreams.http, base, headers)
        if record is None:
            await _refuse(websocket, _NoSuchExecution(), 4404)
            return
        await websocket.accept(subprotocol=subprotocol)
        await websocket.send_json({"type": "status", "data": _status(record)})
        if record["status"] in _FINAL.values():
            await websocket.send_json(_final_message(record))
            await websocket.close()
            return
        await _follow_while_open(
            websocket, _follow(websocket, changes, upstreams.http, base, headers)
        )
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
    http: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
) -> None:
    while True:
        try:
            first = await asyncio.wait_for(changes.get(), timeout=15)
        except TimeoutError:
            # No news for a while: look again, in case an event was missed (e.g. NATS blipped).
            record = await _fetch(http, base, headers)
            if record is None:
                break
            await websocket.send_json({"type": "status", "data": _status(record)})
            if record["status"] in _FINAL.values():
                await websocket.send_json(_final_message(record))
                break
            continue
        # One save stores many events (a stretch of control nodes is one decision), and they
        # arrive together: pass them all on, reading the execution once for the burst.
        burst = [first]
        while not changes.empty():
            burst.append(changes.get_nowait())
        if await _pass_on(websocket, burst, http, base, headers):
            break
    await websocket.close()


async def _pass_on(
    websocket: WebSocket,
    burst: list[dict[str, Any]],
    http: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
) -> bool:
    """Send a burst of changes in order, then the fresh status; True after the final one."""
    kinds = [envelope.get("type", "") for envelope in burst]
    record = None
    if any(kind in _MESSAGE_TYPES or kind in _FINAL for kind in kinds):
        record = await _fetch(http, base, headers)
        if record is None:
            return True
    for kind, envelope in zip(kinds, burst, strict=True):
        if kind in LIVE_ONLY:
            await websocket.send_json(envelope)
        elif kind in _NEWS_TYPES:
            await websocket.send_json({"type": _NEWS_TYPES[kind], "data": envelope["data"]})
        elif kind in _MESSAGE_TYPES:
            await websocket.send_json({"type": _MESSAGE_TYPES[kind], "data": envelope["data"]})
            if kind == "NodeCompleted" and record is not None:
                node = record["nodes"].get(envelope["data"].get("run_key", ""), {})
                await websocket.send_json(
                    {"type": "node_output", "data": {"node_id": node.get("node_id"),
                                                     "output": node.get("output")}}
                )  # fmt: skip
    if record is None:
        return False
    await websocket.send_json({"type": "status", "data": _status(record)})
    if any(kind in _FINAL for kind in kinds):
        await websocket.send_json(_final_message(record))
        return True
    return False


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


async def _fetch(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], patience_s: float = 15.0
) -> Any:
    """The execution record; None when it does not exist for this caller. A busy or
    restarting executor is asked again, backing off, for up to `patience_s` before the
    socket is given up (closed with 1013, try again later)."""
    delay, waited = 0.25, 0.0
    while True:
        try:
            response = await http.get(url, headers=headers)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 404:
            return None
        if response is not None and response.status_code == 200:
            return response.json()
        if waited >= patience_s:
            raise _ExecutorDown
        await asyncio.sleep(delay)
        waited += delay
        delay = min(delay * 2, 2.0)


def _status(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": record["status"],
        "progress": record["progress"],
        "current_node": record["current_node"],
    }


def _final_message(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": record["status"],
        "data": {
            "status": record["status"],
            "output_data": record["output_data"],
            "error": record["error"],
            "execution_time": record["execution_time"],
        },
    }
