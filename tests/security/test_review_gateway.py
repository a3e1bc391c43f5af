"""Issue 13, the gateway's items, against a running platform:

- 6: the WebSocket token never reaches a log line (uvicorn logged `?token=…` for every
  handshake), and it may come in `Sec-WebSocket-Protocol` (`["bearer", token]`);
- 13: a path with dot segments or encoded separators is refused (it reached a service's
  `/metrics` through httpx's normalisation), and the gateway's `/metrics` is not public;
- 16: an execution id that is not a UUID is refused like an unknown one (`>` raised an
  uncaught BadSubjectError on its way into a NATS subject);
- 14 (part): open WebSockets and workflows per user are bounded (429 QUOTA_EXCEEDED).

Paths are sent with http.client, which sends them as written (httpx would normalise them).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import E, W, create_workflow, edge, node
from tests.support.attack import SUITE_BACKENDS
from tests.support.fake_llm import FakeLLM
from tests.support.platform_fixtures import module_platform
from tests.support.stack import Stack

MAX_SOCKETS, MAX_WORKFLOWS = 2, 3
SETTINGS = {
    "AGENTFLOW_MAX_WEBSOCKETS_PER_USER": str(MAX_SOCKETS),
    "AGENTFLOW_MAX_WORKFLOWS_PER_USER": str(MAX_WORKFLOWS),
    # Request and handshake lines on (off by default): the token must not reach them either.
    "AGENTFLOW_ACCESS_LOG": "true",
}
WS = "/api/v1/ws/executions"
# A run that stays `running` for as long as the tests need it: its model node waits for a
# worker, and the fixture stops the workers first.
SLOW: dict[str, Any] = {
    "name": "慢模型",
    "nodes": [
        node("start-1", "start"),
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.text}"),
        node("end-1", "end"),
    ],
    "edges": [edge("start-1", "ask"), edge("ask", "end-1")],
}


@pytest.fixture(scope="module", params=SUITE_BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    with module_platform(request, tmp_path_factory, fake_llm, SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def running(platform: Stack) -> Iterator[tuple[httpx.Client, str, str]]:
    """A user, their token, and one execution of theirs that keeps running."""
    for worker in platform.workers:
        worker.kill9()
    client, _ = platform.user_client()
    token = str(client.headers["Authorization"].split(" ", 1)[1])
    with client:
        workflow_id = create_workflow(client, SLOW)
        run = client.post(f"{W}/{workflow_id}/execute", json={"input_data": {"text": "hi"}})
        assert run.status_code in (200, 201, 202), run.text
        execution_id = run.json()["id"]
        deadline = time.monotonic() + 15
        while client.get(f"{E}/{execution_id}/status").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield client, token, execution_id
        client.post(f"{E}/{execution_id}/cancel")


def ws_url(platform: Stack, execution_id: str, token: str | None = None) -> str:
    base = platform.base_url.replace("http://", "ws://") + f"{WS}/{execution_id}"
    return base if token is None else f"{base}?token={token}"


def first_status(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(socket.recv(timeout=10))
    assert message["type"] == "status", message
    return message


def refusal(url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """The HTTP answer to a refused handshake: its status and its (error-shaped) body."""
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=10, **kwargs):
        pass
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def raw_get(platform: Stack, target: str, token: str) -> tuple[int, str]:
    """GET `target` exactly as written (no client-side normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", platform.gateway.port, timeout=15)
    try:
        connection.request("GET", target, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


# -- 13: paths ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/data-sources/../../../metrics",
        "/api/v1/workflows/../../../metrics",
        "/api/v1/auth/../../../readyz",
        "/api/v1/data-sources/%2e%2e/%2e%2e/%2e%2e/metrics",
        "/api/v1/data-sources/..%2F..%2F..%2Fmetrics",
        "/api/v1/data-sources/..%5C..%5C..%5Cmetrics",
        "/api/v1/data-sources/..\\..\\..\\metrics",
        "/api/v1/data-sources/..;/..;/..;/metrics",
        "/api/v1/data-sources/./../../../metrics?x=1",
        "/api/v1/data-sources/%252e%252e/%252e%252e/%252e%252e/metrics",
    ],
)
def test_a_path_that_could_mean_another_is_refused(
    platform: Stack, running: tuple[httpx.Client, str, str], target: str
) -> None:
    _, token, _ = running
    status, body = raw_get(platform, target, token)
    assert "agentflow_" not in body  # no service's internals
    assert "# HELP" not in body
    assert status == 400, (status, body[:300])
    error = json.loads(body)
    assert (error["status_code"], error["error_code"]) == (400, "INVALID_PATH")
    assert error["detail"]


def test_the_gateway_metrics_are_not_on_the_public_port(platform: Stack) -> None:
    with platform.client() as client:
        assert_error(client.get("/metrics"), 404, "NOT_FOUND")
    scraped = httpx.get(platform.gateway_metrics_url + "/metrics", timeout=10)
    assert scraped.status_code == 200
    assert 'service="gateway"' in scraped.text


# -- 16: execution ids -------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", [">", "*", "a.b", "a.>", " x", "..."])
def test_an_id_that_is_no_uuid_is_refused_as_an_unknown_execution(
    platform: Stack, running: tuple[httpx.Client, str, str], bad_id: str
) -> None:
    _, token, _ = running
    unknown = refusal(ws_url(platform, "00000000-0000-4000-8000-000000000000", token))
    assert unknown[0] == 404
    assert unknown[1]["error_code"] == "EXECUTION_NOT_FOUND"
    assert refusal(ws_url(platform, quote(bad_id, safe=""), token)) == unknown


# -- 6: the token on the socket ----------------------------------------------------------


def test_the_token_may_come_as_a_subprotocol_and_never_reaches_a_log(
    platform: Stack, running: tuple[httpx.Client, str, str]
) -> None:
    _, token, execution_id = running
    with connect(ws_url(platform, execution_id, token), open_timeout=10) as socket:
        assert first_status(socket)["data"]["status"] == "running"
        assert socket.subprotocol is None
    # What a browser can send: new WebSocket(url, ["bearer", token]).
    url = ws_url(platform, execution_id)
    offered = [Subprotocol("bearer"), Subprotocol(token)]
    with connect(url, subprotocols=offered, open_timeout=10) as socket:
        assert first_status(socket)["data"]["status"] == "running"
        assert socket.subprotocol == "bearer"  # echoed: never the token
        assert socket.response is not None
        assert token not in json.dumps(dict(socket.response.headers.raw_items()))
    assert refusal(url, subprotocols=["bearer", "not-a-token"])[0] == 401
    assert refusal(url, subprotocols=["bearer"])[0] == 401
    assert refusal(ws_url(platform, ">", token))[0] == 404  # a refused handshake, logged too

    # uvicorn writes one line per handshake, accepted or refused: all of them are there, and
    # no process wrote the token anywhere.
    deadline = time.monotonic() + 10
    while platform.gateway.logs().count(f'"WebSocket {WS}/') < 5:
        assert time.monotonic() < deadline, platform.gateway.logs()[-2000:]
        time.sleep(0.1)
    for process in (*platform.services, *platform.workers):
        assert token not in process.logs(), process.name
        assert "token=" not in process.logs(), process.name


# -- 14: quotas --------------------------------------------------------------------------


def test_open_sockets_per_user_are_bounded_and_given_back_on_close(
    platform: Stack, running: tuple[httpx.Client, str, str]
) -> None:
    _, token, execution_id = running
    url = ws_url(platform, execution_id, token)
    with contextlib.ExitStack() as sockets:
        first = sockets.enter_context(connect(url, open_timeout=10))
        second = sockets.enter_context(connect(url, open_timeout=10))
        first_status(first)
        first_status(second)
        status, body = refusal(url)
        assert status == 429, body
        assert (body["status_code"], body["error_code"]) == (429, "QUOTA_EXCEEDED")
        assert str(MAX_SOCKETS) in body["detail"]
        # Another user is not held to this user's count.
        other, _ = platform.user_client()
        with other:
            other_token = str(other.headers["Authorization"].split(" ", 1)[1])
            assert refusal(ws_url(platform, execution_id, other_token))[0] == 404
        first.close()
        # Its place is free again: released when the client leaves, not at a later send.
        deadline = time.monotonic() + 10
        while (status := reopen(url)) != 101:
            assert status == 429
            assert time.monotonic() < deadline, "the closed socket was never released"
            time.sleep(0.1)


def reopen(url: str) -> int:
    """101 when a socket opened (and gave its first status), else the refusal's status."""
    try:
        with connect(url, open_timeout=10) as again:
            first_status(again)
    except InvalidStatus as refused:
        return refused.response.status_code
    return 101


def test_workflows_per_user_are_bounded(platform: Stack) -> None:
    client, _ = platform.user_client()
    with client:
        made = [create_workflow(client, SLOW) for _ in range(MAX_WORKFLOWS)]
        exported = client.get(f"{W}/{made[0]}/export").json()["workflow"]
        for attempt in (
            client.post(W, json=SLOW),
            client.post(f"{W}/import", json={"workflow": exported}),
            client.post(f"{W}/templates/{template_id(client)}/create"),
        ):
            body = assert_error(attempt, 429, "QUOTA_EXCEEDED")
            assert str(MAX_WORKFLOWS) in body["detail"]
        assert len(client.get(W).json()) == MAX_WORKFLOWS
        # A deleted workflow no longer counts.
        assert client.delete(f"{W}/{made[0]}").status_code == 200
        assert client.post(W, json=SLOW).status_code == 201
        # Each user has a quota of their own.
        other, _ = platform.user_client()
        with other:
            assert other.post(W, json=SLOW).status_code == 201


def template_id(client: httpx.Client) -> str:
    templates = client.get(f"{W}/templates").json()
    assert templates
    return str(templates[0]["id"])
