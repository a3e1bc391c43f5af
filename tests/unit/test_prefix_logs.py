"""`make run`'s log listener (deploy/local/prefix_logs.py), run as supervisord runs it: the
events supervisord sends on its stdin, whole prefixed lines on its stderr, and the protocol's
answers on its stdout."""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import REPO_ROOT

LISTENER = REPO_ROOT / "deploy" / "local" / "prefix_logs.py"


def event(serial: int, eventname: str, body: str) -> str:
    """One event as supervisord writes it: a header line, then `len` characters."""
    return (
        f"ver:3.0 server:supervisor serial:{serial} pool:logs poolserial:{serial} "
        f"eventname:{eventname} len:{len(body)}\n{body}"
    )


def log_event(serial: int, process: str, data: str) -> str:
    body = f"processname:{process} groupname:{process} pid:{100 + serial} channel:stdout\n{data}"
    return event(serial, "PROCESS_LOG_STDOUT", body)


def listen(events: list[str]) -> tuple[str, str]:
    """The listener's stdout (protocol) and stderr (the lines), once stdin ends."""
    done = subprocess.run(
        [sys.executable, str(LISTENER)],
        input="".join(events).encode(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout.decode(), done.stderr.decode()


def test_each_line_is_printed_whole_with_its_process_name() -> None:
    protocol, lines = listen(
        [
            log_event(1, "executor", "2026-12-02 10:00:00 INFO one\n2026-12-02 10:00:01 INFO tw"),
            log_event(2, "gateway", "运行完成 ✓\r\n"),
            log_event(3, "executor", "o\n"),
            event(4, "TICK_5", "when:1764669600"),  # not a log: answered, nothing printed
            log_event(5, "worker-1", "no newline yet"),
        ]
    )
    assert lines.splitlines() == [
        "executor    | 2026-12-02 10:00:00 INFO one",
        "gateway     | 运行完成 ✓",
        "executor    | 2026-12-02 10:00:01 INFO two",
    ]
    # Ready at once, then each event answered OK and followed by the next READY.
    assert protocol == "READY\n" + "RESULT 2\nOKREADY\n" * 5
