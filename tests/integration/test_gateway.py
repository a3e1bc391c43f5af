"""The public surface: docs that work offline, one error shape everywhere, health, limits."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from tests.integration.test_auth_journey import assert_error
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def test_openapi_describes_auth_with_schemas(stack: Stack) -> None:
    with stack.client() as client:
        spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    register = paths["/api/v1/auth/register"]["post"]
    assert register["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/RegisterRequest"
    )
    assert register["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UserOut"
    )
    assert register["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
    login = paths["/api/v1/auth/login"]["post"]
    assert "application/x-www-form-urlencoded" in login["requestBody"]["content"]
    assert login["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TokenOut"
    )
    me = paths["/api/v1/auth/me"]["get"]
    assert me["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MeOut"
    )
    assert me["security"]
    for path, method in [
        ("/api/v1/workflows", "get"),
        ("/api/v1/workflows", "post"),
        ("/api/v1/workflows/{workflow_id}", "put"),
        ("/api/v1/workflows/validate", "post"),
        ("/api/v1/workflows/{workflow_id}/versions/{version}/rollback", "post"),
        ("/api/v1/workflows/import", "post"),
        ("/api/v1/workflows/templates", "get"),
    ]:
        operation = paths[path][method]
        assert operation["summary"], path
        assert "200" in operation["responses"] or "201" in operation["responses"], path
    listing = paths["/api/v1/workflows"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "skip",
        "limit",
        "search",
        "status",
        "sort_by",
        "sort_order",
    }
    schemas = spec["components"]["schemas"]
    assert {"WorkflowCreate", "WorkflowOut", "ValidationOut", "VersionOut"} <= schemas.keys()
    assert set(schemas["UserOut"]["properties"]) == {
        "id",
        "username",
        "email",
        "role",
        "created_at",
    }
    assert set(schemas["ErrorResponse"]["required"]) == {"detail", "error_code", "status_code"}
    assert "OAuth2PasswordBearer" in spec["components"]["securitySchemes"]


def test_docs_render_without_internet(stack: Stack) -> None:
    with stack.client() as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200
            assert "cdn." not in html.text
            assert "/openapi.json" in html.text
            for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"):
                if asset in html.text:
                    served = client.get(f"/static-offline-docs/{asset}")
                    assert served.status_code == 200
                    assert len(served.content) > 10_000


def test_errors_have_the_documented_shape_everywhere(stack: Stack) -> None:
    with stack.client() as client:
        assert_error(client.get("/api/v1/nothing-here"), 404, "NOT_FOUND")
        assert_error(client.get("/no-such-page"), 404, "NOT_FOUND")
        assert_error(client.get("/api/v1/auth/register"), 405, "METHOD_NOT_ALLOWED")
        assert_error(client.delete("/healthz"), 405, "METHOD_NOT_ALLOWED")
        assert_error(client.get("/api/v1/auth/me"), 401, "UNAUTHORIZED")


def test_oversized_body_is_413(stack: Stack) -> None:
    with stack.client() as client:
        response = client.post(
            "/api/v1/auth/register",
            content=b"{" + b" " * (11 * 1024 * 1024) + b"}",
            headers={"content-type": "application/json"},
        )
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


def test_health_readiness_and_metrics(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}
        diagnostics = client.get("/diagnostics").json()
        assert diagnostics["status"] == "ok"
        upstreams = ("auth", "workflows", "executor", "datasources")
        assert diagnostics["dependencies"] == {
            "nats": "ok",
            **dict.fromkeys(upstreams, "ok"),
            **{f"{name}.{dep}": "ok" for name in upstreams for dep in ("store", "nats")},
        }
        # Not on the public port: on a listener of its own, for the scraper.
        assert_error(client.get("/metrics"), 404, "NOT_FOUND")
    metrics = httpx.get(stack.gateway_metrics_url + "/metrics").text
    assert re.search(r'agentflow_http_requests_total\{[^}]*service="gateway"', metrics)
    assert httpx.get(stack.auth.base_url + "/readyz").json() == {"status": "ready"}
    auth_diagnostics = httpx.get(stack.auth.base_url + "/diagnostics").json()
    assert auth_diagnostics["dependencies"] == {"store": "ok", "nats": "ok"}


def test_upstream_down_is_503_not_a_hang(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    stack.auth.kill9()
    with stack.client() as client:
        started = time.monotonic()
        response = client.post("/api/v1/auth/login", data={"username": "a", "password": "b"})
        elapsed = time.monotonic() - started
        body = assert_error(response, 503, "UPSTREAM_UNAVAILABLE")
        assert "auth" in body["detail"]
        # The gateway stays ready (ADR 0008); /diagnostics names the upstream that is down.
        assert client.get("/readyz").json() == {"status": "ready"}
        deadline = time.monotonic() + 20
        while (diagnostics := client.get("/diagnostics")).json()["dependencies"]["auth"] == "ok":
            assert time.monotonic() < deadline, diagnostics.text
            time.sleep(0.1)
        assert_error(diagnostics, 503, "DEPENDENCY_UNAVAILABLE")
        states = diagnostics.json()["dependencies"]
        assert {name for name, state in states.items() if state != "ok"} == {"auth"}
    # Not a timing assertion on speed, only that the client did not wait for its own timeout.
    assert elapsed < 25
