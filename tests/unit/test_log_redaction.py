"""Tokens never reach a log line: uvicorn's own WebSocket handshake lines (accepted and
refused) carry the query string, `?token=…` included, unless shared.logging redacts it."""

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

from shared.logging import install_redaction, redact
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


def test_uvicorn_handshake_lines_carry_no_token(server: str) -> None:
    install_redaction()
    captured = Captured()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(captured)
    level = uvicorn_log.level
    uvicorn_log.setLevel(logging.INFO)
    try:
        with connect(f"{server}/ws/accepted?token={TOKEN}", open_timeout=5) as socket:
            assert socket.recv(timeout=5) == "hi"
        with pytest.raises(InvalidStatus), connect(f"{server}/ws/refused?token={TOKEN}"):
            pass
        deadline = time.monotonic() + 5
        while len([line for line in captured.lines if "WebSocket" in line]) < 2:
            assert time.monotonic() < deadline, captured.lines
            time.sleep(0.02)
    finally:
        uvicorn_log.removeHandler(captured)
        uvicorn_log.setLevel(level)
    handshakes = [line for line in captured.lines if "WebSocket" in line]
    assert any("/ws/accepted?[redacted]" in line for line in handshakes), handshakes
    assert any("/ws/refused?[redacted]" in line for line in handshakes), handshakes
    assert not [line for line in captured.lines if TOKEN in line or "token=" in line]


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
