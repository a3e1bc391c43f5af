"""Tokens never reach a log line: uvicorn's own WebSocket handshake lines (accepted and
refused) carry the query string, `?token=…` included, unless shared.logging redacts it. Those
lines are the sockets' access log: written only with AGENTFLOW_ACCESS_LOG=true."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from shared.logging import install_redaction, redact, set_access_log
from tests.support.processes import free_port

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


class Captured(logging.Handler):
    """A handler that is not the platform's: redaction must not depend on which prints."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _socket(websocket: WebSocket) -> None:
    if websocket.path_params["name"] == "refused":
        await websocket.close(code=4401)
        return
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


@pytest.fixture
def server() -> Iterator[str]:
    app = Starlette(routes=[WebSocketRoute("/ws/{name}", _socket)])
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"ws://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def uvicorn_lines() -> Iterator[Captured]:
    """uvicorn's own lines, at INFO, whichever handler prints them."""
    install_redaction()
    captured = Captured()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(captured)
    level = uvicorn_log.level
    uvicorn_log.setLevel(logging.INFO)
    try:
        yield captured
    finally:
        uvicorn_log.removeHandler(captured)
        uvicorn_log.setLevel(level)
        set_access_log(False)  # the default


def open_sockets(server: str) -> None:
    with connect(f"{server}/ws/accepted?token={TOKEN}", open_timeout=5) as socket:
        assert socket.recv(timeout=5) == "hi"
    with pytest.raises(InvalidStatus), connect(f"{server}/ws/refused?token={TOKEN}"):
        pass


def test_uvicorn_handshake_lines_carry_no_token(server: str, uvicorn_lines: Captured) -> None:
    set_access_log(True)
    open_sockets(server)
    deadline = time.monotonic() + 5
    while len([line for line in uvicorn_lines.lines if "WebSocket" in line]) < 2:
        assert time.monotonic() < deadline, uvicorn_lines.lines
        time.sleep(0.02)
    handshakes = [line for line in uvicorn_lines.lines if "WebSocket" in line]
    assert any("/ws/accepted?[redacted]" in line for line in handshakes), handshakes
    assert any("/ws/refused?[redacted]" in line for line in handshakes), handshakes
    assert not [line for line in uvicorn_lines.lines if TOKEN in line or "token=" in line]


def test_sockets_leave_no_line_without_the_access_log(server: str, uvicorn_lines: Captured) -> None:
    set_access_log(False)
    open_sockets(server)
    time.sleep(0.3)  # the server logs the close after the client saw it
    assert uvicorn_lines.lines == []
    logging.getLogger("uvicorn.error").warning("an error is still written")
    assert uvicorn_lines.lines == ["an error is still written"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('1.2.3.4:5 - "WebSocket /ws/x?token=abc" [accepted]',
         '1.2.3.4:5 - "WebSocket /ws/x?[redacted]" [accepted]'),
        ("GET https://api.example.com/v1?api_key=k&x=1 failed",
         "GET https://api.example.com/v1?[redacted] failed"),
        (f"< Sec-WebSocket-Protocol: bearer, {TOKEN}",
         "< Sec-WebSocket-Protocol: bearer, [redacted]"),
        ("nothing to hide? no.", "nothing to hide? no."),
        ("运行完成 /api/v1/executions/abc", "运行完成 /api/v1/executions/abc"),
    ],
)  # fmt: skip
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected
