"""supervisord event listener of `make run` (deploy/local/supervisord.conf): prints each line
a process writes as `<process> | <line>`.

The line is printed as the process wrote it, with the one timestamp its log formatter gave it
(honcho added a second). The listener protocol runs on stdin/stdout, so lines go to stderr,
which supervisord writes to its own stdout.

Every line of every process passes here, so each event costs little: one write of its lines,
and the answer to it sent together with the request for the next (`RESULT 2\\nOK` then
`READY\\n`, in one write supervisord reads in one go), instead of two writes each flushed.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO

NAME_WIDTH = len("datasources")  # the longest process name, so the bars line up
READY = "READY\n"
OK_THEN_READY = "RESULT 2\nOK" + READY


class LinePrefixer:
    """Turns chunks of output into whole, prefixed lines. A chunk may end mid-line; the rest
    of that line waits for the process's next chunk."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.partial: dict[str, str] = {}
        self._prefixes: dict[str, str] = {}

    def feed(self, process: str, data: str) -> None:
        *lines, rest = (self.partial.pop(process, "") + data).split("\n")
        if rest:
            self.partial[process] = rest
        if not lines:
            return
        prefix = self._prefixes.get(process)
        if prefix is None:
            prefix = self._prefixes[process] = f"{process:<{NAME_WIDTH}} | "
        self.out.write("".join(f"{prefix}{line.rstrip(chr(13))}\n" for line in lines))
        self.out.flush()


def fields(line: str) -> dict[str, str]:
    """`key:value key:value` (supervisord's header lines)."""
    return dict(field.split(":", 1) for field in line.split())


def serve(stdin: TextIO, stdout: TextIO, prefixer: LinePrefixer) -> None:
    """The listener protocol until stdin ends (supervisord stopped)."""
    stdout.write(READY)
    stdout.flush()
    while header := stdin.readline():
        headers = fields(header)
        payload = stdin.read(int(headers["len"]))
        if headers["eventname"].startswith("PROCESS_LOG"):
            event, _, data = payload.partition("\n")
            prefixer.feed(fields(event)["processname"], data)
        stdout.write(OK_THEN_READY)
        stdout.flush()


def main() -> None:
    # supervisord counts an event's length in characters of UTF-8 text: read it as such, with
    # no newline translation, or the count and the stream fall out of step.
    stdin, stdout, stderr = sys.stdin, sys.stdout, sys.stderr
    assert isinstance(stdin, io.TextIOWrapper)
    assert isinstance(stderr, io.TextIOWrapper)
    stdin.reconfigure(encoding="utf-8", errors="replace", newline="")
    stderr.reconfigure(encoding="utf-8", errors="replace")
    serve(stdin, stdout, LinePrefixer(stderr))


if __name__ == "__main__":
    main()
