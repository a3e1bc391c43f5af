"""supervisord event listener of `make run` (deploy/local/supervisord.conf): prints each line
a process writes as `<process> | <line>`.

The line is printed as the process wrote it, with the one timestamp its log formatter gave it
(honcho added a second). The listener protocol runs on stdin/stdout, so lines go to stderr,
which supervisord writes to its own stdout.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO

from supervisor import childutils

NAME_WIDTH = len("datasources")  # the longest process name, so the bars line up


class LinePrefixer:
    """Turns chunks of output into whole, prefixed lines. A chunk may end mid-line; the rest
    of that line waits for the process's next chunk."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.partial: dict[str, str] = {}

    def feed(self, process: str, data: str) -> None:
        *lines, rest = (self.partial.pop(process, "") + data).split("\n")
        for line in lines:
            self.out.write(f"{process:<{NAME_WIDTH}} | {line.rstrip(chr(13))}\n")
        if rest:
            self.partial[process] = rest
        self.out.flush()


def main() -> None:
    # supervisord counts an event's length in characters of UTF-8 text: read it as such, with
    # no newline translation, or the count and the stream fall out of step.
    stdin, stdout, stderr = sys.stdin, sys.stdout, sys.stderr
    assert isinstance(stdin, io.TextIOWrapper)
    assert isinstance(stderr, io.TextIOWrapper)
    stdin.reconfigure(encoding="utf-8", errors="replace", newline="")
    stderr.reconfigure(encoding="utf-8", errors="replace")
    prefixer = LinePrefixer(stderr)
    while True:
        headers, payload = childutils.listener.wait(stdin, stdout)
        if headers["eventname"].startswith("PROCESS_LOG"):
            event, data = childutils.eventdata(payload)
            prefixer.feed(event["processname"], data)
        childutils.listener.ok(stdout)


if __name__ == "__main__":
    main()
