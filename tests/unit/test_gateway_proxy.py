"""What the gateway's proxy sends on and hands back (services/gateway/proxy.py), against a
real local upstream: the request as the client sent it, less connection headers and plus the
gateway's own; the answer with repeated headers intact; and the errors when the upstream is
down or slow, or the body too large. No platform: the gateway app with its upstreams here."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from starlette.testclient import TestClient

from services.gateway import main as gateway_main
from services.gateway.settings import GatewaySettings
from tests.support.http_servers import QuietHandler, serving
from tests.support.processes import free_port


class Upstream(QuietHandler):
    """Records each request; `/slow` answers after a while; every answer sets two cookies."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": [(k.lower(), v) for k, v in self.headers.items()],
                "body": body,
            }
        )
        if self.path.startswith("/api/v1/workflows/slow"):
            time.sleep(2)  # the gateway has given up by then, and closed the connection
            return
        self.reply(
            201,
            {"ok": True},
            headers={"set-cookie": "a=1", "x-request-id": "upstream's", "x-extra": "kept"},
        )

    def end_headers(self) -> None:
        self.send_header("Set-Cookie", "b=2")
        super().end_headers()

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serving(Upstream) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The gateway app (no lifespan: nothing connects to NATS), every upstream at `upstream`
    but the data sources service, at a port where nothing listens."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("AGENTFLOW_"):
                patch.delenv(key)
        patch.setenv("AGENTFLOW_ENVIRONMENT", "development")
        patch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path_factory.mktemp("proxy")))
        for name in ("AUTH", "WORKFLOWS", "EXECUTOR"):
            patch.setenv(f"AGENTFLOW_{name}_URL", upstream)
        patch.setenv("AGENTFLOW_DATASOURCES_URL", f"http://127.0.0.1:{free_port()}")
        patch.setenv("AGENTFLOW_UPSTREAM_TIMEOUT_S", "0.5")
        patch.setenv("AGENTFLOW_MAX_BODY_BYTES", "1000")
        patch.setattr(gateway_main, "configure_logging", lambda *_, **__: None)
        app = gateway_main.create_app(GatewaySettings())
        with TestClient(app) as client:
            client.headers["authorization"] = "Bearer " + app.state.tokens.issue(
                uuid.uuid4(), "user"
            )
            yield client


def _last_request() -> dict[str, Any]:
    """The last request the gateway forwarded: its own probes of the upstreams (the
    dependency checks of `/diagnostics`) may arrive at any moment and are not forwarded."""
    probes = ("/readyz", "/healthz", "/diagnostics")
    return [r for r in Upstream.seen if not r["path"].startswith(probes)][-1]


def test_the_request_goes_on_as_the_client_sent_it(gateway: TestClient) -> None:
    answer = gateway.post(
        "/api/v1/workflows/a%20b/%E5%B7%A5?q=%20x&q=2",
        content=b'{"name": "x"}',
        headers={
            "content-type": "application/json",
            "x-custom": "yes",
            "x-request-id": "req-1",
            "x-forwarded-for": "10.0.0.1",
            "connection": "keep-alive, x-custom",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "accept-encoding": "gzip",
        },
    )
    assert answer.status_code == 201
    seen = _last_request()
    assert seen["method"] == "POST"
    assert seen["path"] == "/api/v1/workflows/a%20b/%E5%B7%A5?q=%20x&q=2"
    assert seen["body"] == b'{"name": "x"}'
    headers = dict(seen["headers"])
    assert headers["content-type"] == "application/json"
    assert headers["x-custom"] == "yes"
    assert headers["x-request-id"] == "req-1"
    assert headers["x-forwarded-for"] == "10.0.0.1, testclient"
    assert headers["accept-encoding"] == "identity"
    assert headers["authorization"].startswith("Bearer ")
    assert headers["content-length"] == "13"
    # The trace goes on (under the gateway's span, where tracing is configured).
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    names = [name for name, _ in seen["headers"]]
    assert "connection" not in names
    assert len(names) == len(set(names)), names


def test_nothing_is_added_that_the_client_did_not_send(gateway: TestClient) -> None:
    gateway.post("/api/v1/auth/login", content=b"raw", headers={"user-agent": "tester/1"})
    headers = dict(_last_request()["headers"])
    # No body type invented; the client's name, not the gateway's client library's.
    assert "content-type" not in headers
    assert headers["user-agent"] == "tester/1"
    gateway.get("/api/v1/executions")
    assert "content-length" not in dict(_last_request()["headers"])


def test_the_answer_comes_back_with_its_repeated_headers(gateway: TestClient) -> None:
    answer = gateway.get("/api/v1/executions", headers={"x-request-id": "req-2"})
    assert answer.status_code == 201
    assert answer.json() == {"ok": True}
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert answer.headers["x-extra"] == "kept"
    assert answer.headers.get_list("x-request-id") == ["req-2"]  # the gateway's, not upstream's
    assert answer.headers["content-length"] == str(len(answer.content))


def test_one_callers_cookies_never_reach_another(gateway: TestClient) -> None:
    """The upstream sets cookies on every answer; the gateway's pooled client keeps none."""
    gateway.get("/api/v1/executions")
    gateway.cookies.clear()
    gateway.get("/api/v1/executions")
    assert "cookie" not in dict(_last_request()["headers"])


def test_an_upstream_down_or_slow_answers_503_or_504(gateway: TestClient) -> None:
    down = gateway.get("/api/v1/data-sources")
    assert down.status_code == 503
    assert down.json()["error_code"] == "UPSTREAM_UNAVAILABLE"
    slow = gateway.get("/api/v1/workflows/slow")
    assert slow.status_code == 504
    assert slow.json()["error_code"] == "UPSTREAM_TIMEOUT"
    # The pool is fine after both: the next call is answered.
    assert gateway.get("/api/v1/executions").status_code == 201


def test_a_body_over_the_limit_is_413_before_it_is_sent(gateway: TestClient) -> None:
    before = len(Upstream.seen)
    declared = gateway.post("/api/v1/workflows", content=b"x" * 1001)
    assert declared.status_code == 413
    assert declared.json()["error_code"] == "PAYLOAD_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no content-length: counted as it arrives
        yield b"x" * 600
        yield b"x" * 600

    streamed = gateway.post("/api/v1/workflows", content=chunks())
    assert streamed.status_code == 413
    assert len(Upstream.seen) == before


def test_unknown_routes_and_methods_keep_the_error_shape(gateway: TestClient) -> None:
    missing = gateway.get("/api/v1/nothing-here")
    assert (missing.status_code, missing.json()["error_code"]) == (404, "NOT_FOUND")
    method = gateway.request("TRACE", "/api/v1/workflows")
    assert (method.status_code, method.json()["error_code"]) == (405, "METHOD_NOT_ALLOWED")
    anonymous = gateway.get("/api/v1/workflows", headers={"authorization": ""})
    assert (anonymous.status_code, anonymous.json()["error_code"]) == (401, "UNAUTHORIZED")


def test_concurrent_calls_share_the_pool(gateway: TestClient) -> None:
    answers: list[int] = []

    def call() -> None:
        answers.append(gateway.get("/api/v1/executions").status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [201] * 8
    assert json.loads(gateway.get("/api/v1/executions").content) == {"ok": True}
