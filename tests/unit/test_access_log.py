"""Per-request lines: none by default (each costs formatting, writing and relaying), one per
request with AGENTFLOW_ACCESS_LOG=true; an answer of 5xx is logged either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from shared.logging import set_access_log
from shared.settings import PlatformSettings
from shared.web.middleware import RequestContextMiddleware


class Lines(logging.Handler):
    """What the process's handler would print (the root logger's), as level and message."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


def _answer(request: Request) -> PlainTextResponse:
    status = int(request.path_params["status"])
    return PlainTextResponse("answered", status_code=status)


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        set_access_log(False)  # the default


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/answer/{status}", _answer)])
    with TestClient(RequestContextMiddleware(app, service="test")) as test_client:
        yield test_client


def test_the_access_log_is_off_by_default() -> None:
    assert PlatformSettings.model_fields["access_log"].default is False


def test_requests_leave_no_line_but_a_5xx_does(lines: Lines, client: TestClient) -> None:
    set_access_log(False)
    for status in (200, 201, 404, 422):
        assert client.get(f"/answer/{status}").status_code == status
    assert lines.lines == []
    assert client.get("/answer/503").status_code == 503
    assert [(level, message.rsplit(" ", 1)[0]) for level, message in lines.lines] == [
        ("WARNING", "GET /answer/503 503")
    ]


def test_the_access_log_writes_one_line_per_request(lines: Lines, client: TestClient) -> None:
    set_access_log(True)
    for status in (200, 404, 500):
        client.get(f"/answer/{status}")
    client.get("/answer/200?token=secret")
    assert [(level, message.rsplit(" ", 1)[0]) for level, message in lines.lines] == [
        ("INFO", "GET /answer/200 200"),
        ("INFO", "GET /answer/404 404"),
        ("WARNING", "GET /answer/500 500"),
        ("INFO", "GET /answer/200 200"),  # the path only: a query may carry a token
    ]
