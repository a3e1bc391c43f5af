"""Every failure a client can meet answers in the documented shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from shared.errors import Conflict, NotFound
from shared.i18n import Message
from shared.web.app import build_app

GONE = Message("东西没了", "The thing is gone")


class Body(BaseModel):
    count: int


def make_app() -> FastAPI:
    app = build_app(service="t", title="t", description="t", dependencies={})

    @app.get("/conflict")
    def conflict() -> None:
        raise Conflict(error_code="THING_TAKEN")

    @app.get("/gone")
    def gone() -> None:
        raise NotFound(GONE)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals must not leak")

    @app.post("/body")
    def body(payload: Body) -> Body:
        return payload

    return app


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def shape(response) -> dict[str, object]:
    body = response.json()
    assert {"detail", "error_code", "status_code"} <= body.keys()
    assert body["status_code"] == response.status_code
    return body  # type: ignore[no-any-return]


def test_app_errors(client: TestClient) -> None:
    assert shape(client.get("/conflict"))["error_code"] == "THING_TAKEN"
    gone = client.get("/gone")
    assert gone.status_code == 404
    assert shape(gone)["detail"] == "东西没了"
    assert (
        shape(client.get("/gone", headers={"Accept-Language": "en"}))["detail"]
        == "The thing is gone"
    )


def test_framework_errors(client: TestClient) -> None:
    missing = client.get("/nope")
    assert (missing.status_code, shape(missing)["error_code"]) == (404, "NOT_FOUND")
    wrong_method = client.delete("/gone")
    assert (wrong_method.status_code, shape(wrong_method)["error_code"]) == (
        405,
        "METHOD_NOT_ALLOWED",
    )


def test_validation_errors_list_each_field(client: TestClient) -> None:
    response = client.post("/body", json={"count": "many"})
    body = shape(response)
    assert response.status_code == 422
    assert body["error_code"] == "VALIDATION_ERROR"
    assert "count" in str(body["detail"])
    assert body["errors"] == [
        {
            "loc": ["body", "count"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


def test_unexpected_errors_are_500_without_internals(client: TestClient) -> None:
    response = client.get("/boom")
    body = shape(response)
    assert response.status_code == 500
    assert body["error_code"] == "INTERNAL_ERROR"
    assert "secret" not in response.text


def test_readiness_and_diagnostics_without_dependencies(client: TestClient) -> None:
    assert client.get("/readyz").json() == {"status": "ready"}
    diagnostics = client.get("/diagnostics").json()
    assert (diagnostics["status"], diagnostics["dependencies"]) == ("ok", {})
