"""Which request paths the gateway forwards at all.

The gateway picks the upstream from the decoded path but forwards the raw one, and the
upstream URL is normalised on the way (httpx removes `..` segments; the upstream decodes
`%2F` after routing). A path with a dot segment or an encoded separator could therefore mean
one route here and another upstream: `/api/v1/data-sources/../../../metrics` is routed to the
data sources service and reaches its `/metrics`. No API path needs either, so both are refused.
"""

from __future__ import annotations

import re

from services.gateway import messages
from shared.errors import BadRequest

# `%2F` and `%5C` (`/` and `\` encoded), also double-encoded (`%252F`), and encoded dots,
# which only a second decoding would turn into a dot segment.
_ENCODED = re.compile(r"%(?:25)*(?:2f|5c|2e)", re.IGNORECASE)
_DOT_SEGMENTS = frozenset({".", ".."})


class UnsafePath(BadRequest):
    default_code = "INVALID_PATH"
    default_message = messages.UNSAFE_PATH


def check_path(path: str, raw_path: bytes) -> None:
    """Refuse (400) what could be read as another path after forwarding.

    `path` is the decoded path the gateway routes on, `raw_path` the bytes the client sent."""
    raw = raw_path.decode("latin-1")
    if "\\" in path or _ENCODED.search(raw) or _ENCODED.search(path):
        raise UnsafePath
    for segment in path.split("/"):
        # `..;x` is `..` to servers that strip path parameters (the `;` trick).
        if segment.split(";", 1)[0] in _DOT_SEGMENTS:
            raise UnsafePath
