"""The WebSocket at /api/v1/ws/executions/{id}: current state at once, then every change."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, ClassVar

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.test_executions import (
    BRANCHING,
    WAITS_FOR_A_WORKER,
    E,
    W,
    create_workflow,
    wait_finished,
)
from tests.support.http_servers import QuietHandler, serving
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def socket_url(stack: Stack, execution_id: str, token: str) -> str:
    base = stack.base_url.replace("http://", "ws://")
    return f"{base}/api/v1/ws/executions/{execution_id}?token={token}"


def token_of(client: Any) -> str:
    return str(client.headers["Authorization"].split(" ", 1)[1])


def receive_all(url: str, timeout: float = 30) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    with connect(url, open_timeout=10) as socket:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                received.append(json.loads(socket.recv(timeout=timeout)))
            except Exception:  # closed by the server after its final message
                break
    return received


def test_a_run_is_followed_live_to_its_end(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, WAITS_FOR_A_WORKER)
        for worker in stack.workers:
            worker.kill9()  # hold the run at its model node while we connect
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "live!"}}).json()
        deadline = time.monotonic() + 10
        while client.get(f"{E}/{run['id']}/status").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = socket_url(stack, run["id"], token_of(client))
        with connect(url, open_timeout=10) as socket:
            first = json.loads(socket.recv(timeout=10))
            # start-1 ran (1 of 8 top-level nodes); the model node waits for a worker.
            assert first == {
                "type": "status",
                "data": {"status": "running", "progress": 12, "current_node": "ask"},
            }
            for worker in stack.workers:
                worker.start()
            messages = []
            while True:
                try:
                    messages.append(json.loads(socket.recv(timeout=30)))
                except Exception:
                    break
    types = [m["type"] for m in messages]
    assert types[-1] == "completed"
    assert messages[-1]["data"]["output_data"] == {"shout": "live!!", "lang": "en"}
    statuses = [m["data"] for m in messages if m["type"] == "status"]
    progress = [s["progress"] for s in statuses]
    assert progress == sorted(progress)
    assert statuses[-1] == {"status": "completed", "progress": 100, "current_node": None}
    completed = [m["data"]["node_id"] for m in messages if m["type"] == "node_output"]
    # start-1 finished before the socket opened; its events may still arrive (the relay
    # publishes them a moment later), which only repeats what the first status said.
    assert [node for node in completed if node != "start-1"][:2] == ["ask", "input-1"]
    assert {"node_started", "node_completed", "node_skipped"} <= set(types)
    outputs = {
        m["data"]["node_id"]: m["data"]["output"] for m in messages if m["type"] == "node_output"
    }
    assert outputs["t-1"] == "live!!"


class _ExecutorGate(QuietHandler):
    """Between the gateway and the executor: passes every request on, except that once
    `closed_for` names an execution, each read of it (`GET /api/v1/executions/{id}`) is
    answered 503, as by an executor too busy to answer."""

    upstream: ClassVar[str] = ""
    closed_for: ClassVar[str | None] = None
    refused: ClassVar[int] = 0

    def _pass_on(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        closed = type(self).closed_for
        if self.command == "GET" and closed and self.path == f"{E}/{closed}":
            type(self).refused += 1
            self.reply(503, {"detail": "busy", "error_code": "BUSY", "status_code": 503})
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        answer = httpx.request(
            self.command, self.upstream + self.path, headers=headers, content=body, timeout=30
        )
        self.reply(answer.status_code, answer.content, answer.headers.get("content-type", ""))

    do_GET = do_POST = do_DELETE = _pass_on


def test_a_run_is_followed_without_reading_it_after_connect(fresh_stack) -> None:
    """The socket's statuses, node outputs and final message come from the run's events:
    with every read of the execution refused after the socket opened, it still follows the
    run to its end, and never asked."""
    stack: Stack = fresh_stack()

    class Gate(_ExecutorGate):
        upstream = stack.executor.base_url

    with serving(Gate) as gate:
        stack.gateway.env = {**stack.gateway.env, "AGENTFLOW_EXECUTOR_URL": gate}
        stack.start()
        client, _ = stack.user_client()
        with client:
            wid = create_workflow(client, WAITS_FOR_A_WORKER)
            for worker in stack.workers:
                worker.kill9()  # hold the run at its model node while we connect
            body = {"input_data": {"text": "no reads"}}
            run = client.post(f"{W}/{wid}/execute", json=body).json()
            deadline = time.monotonic() + 10
            while client.get(f"{E}/{run['id']}/status").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            with connect(socket_url(stack, run["id"], token_of(client)), open_timeout=10) as ws:
                first = json.loads(ws.recv(timeout=10))
                Gate.closed_for = run["id"]
                for worker in stack.workers:
                    worker.start()
                messages = []
                while True:
                    try:
                        messages.append(json.loads(ws.recv(timeout=30)))
                    except Exception:  # closed by the server after its final message
                        break
            refused, Gate.closed_for = Gate.refused, None
            record = wait_finished(client, run["id"])
    assert first == {
        "type": "status",
        "data": {"status": "running", "progress": 12, "current_node": "ask"},
    }
    assert messages[-1] == {
        "type": "completed",
        "data": {
            "status": "completed",
            "output_data": {"shout": "no reads!", "lang": "en"},
            "error": None,
            "execution_time": record["execution_time"],
        },
    }
    statuses = [m["data"] for m in messages if m["type"] == "status"]
    assert [s["progress"] for s in statuses] == sorted(s["progress"] for s in statuses)
    assert statuses[-1] == {"status": "completed", "progress": 100, "current_node": None}
    outputs = {m["data"]["node_id"]: m["data"]["output"] for m in messages
               if m["type"] == "node_output"}  # fmt: skip
    assert outputs["ask"] == record["nodes"]["ask"]["output"]
    assert outputs["t-1"] == "no reads!"
    assert refused == 0


def test_a_finished_run_sends_its_state_and_closes(stack: Stack) -> None:
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, BRANCHING)
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "done"}}).json()
        wait_finished(client, run["id"])
        messages = receive_all(socket_url(stack, run["id"], token_of(client)))
    assert [m["type"] for m in messages] == ["status", "completed"]
    assert messages[0]["data"]["status"] == "completed"


def test_bad_tokens_and_other_users_are_refused(stack: Stack) -> None:
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, BRANCHING)
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "x"}}).json()
        other, _ = stack.user_client()
        with other:
            for url in (
                socket_url(stack, run["id"], "not-a-token"),
                socket_url(stack, run["id"], "").replace("?token=", ""),
                socket_url(stack, run["id"], token_of(other)),
                socket_url(stack, str(uuid.uuid4()), token_of(client)),
            ):
                with pytest.raises(InvalidStatus), connect(url, open_timeout=10):
                    pass
