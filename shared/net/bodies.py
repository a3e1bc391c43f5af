"""Response bodies read in bounded pieces, decompression included.

httpx decodes `Content-Encoding` one network read at a time, without an output limit: 64 KiB of
gzip can inflate to 64 MiB in one step, before any caller's size check runs (a "zip bomb").
`iter_decoded` inflates with zlib's `max_length`, so no step yields more than `piece` bytes and
a caller that stops reading stops the inflating too. Encodings: identity, gzip and deflate (what
`ACCEPT_ENCODING` asks for); anything else is an `httpx.DecodingError`, as is corrupt data.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Final

import httpx

# Sent on every request whose body is read here: the encodings `iter_decoded` can bound.
ACCEPT_ENCODING: Final = "gzip, deflate"
PIECE_BYTES: Final = 64 * 1024
_GZIP: Final = frozenset({"gzip", "x-gzip"})


class _Inflater:
    """One zlib stream (gzip, or deflate with or without its zlib header), bounded per step."""

    def __init__(self, encoding: str, piece: int) -> None:
        self._deflate = encoding == "deflate"
        self._zlib = zlib.decompressobj(
            zlib.MAX_WBITS | 16 if encoding in _GZIP else zlib.MAX_WBITS
        )
        self._piece = piece
        self._started = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._zlib.decompress(data, self._piece)
            except zlib.error as exc:
                # Many servers send "deflate" without the zlib header (as httpx also accepts).
                if self._deflate and not self._started:
                    self._deflate = False
                    self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"corrupt {self._name} data: {exc}") from exc
            self._started = True
            if out:
                yield out
            data = self._zlib.unconsumed_tail
            # A full piece may leave output inside zlib even when all input was taken.
            if not data and len(out) < self._piece:
                return

    def finish(self) -> Iterator[bytes]:
        yield from self.feed(b"")

    @property
    def _name(self) -> str:
        return "deflate" if self._deflate else "gzip"


def _encoding(response: httpx.Response) -> str | None:
    """The one encoding to undo (None: identity); DecodingError for what cannot be bounded."""
    names: list[str] = [
        name.strip().lower()
        for name in response.headers.get("content-encoding", "").split(",")
        if name.strip() and name.strip().lower() != "identity"
    ]
    if not names:
        return None
    if len(names) == 1 and (names[0] in _GZIP or names[0] == "deflate"):
        return names[0]
    raise httpx.DecodingError(f"unsupported content encoding: {', '.join(names)[:100]}")


async def iter_decoded(response: httpx.Response, piece: int = PIECE_BYTES) -> AsyncIterator[bytes]:
    """The body of a streamed response, decoded, as it arrives, in pieces of at most `piece`
    bytes (a network read is 64 KiB at most; inflating is bounded per step)."""
    try:
        held = response.content  # read already (a response built in memory): decoded too
    except httpx.ResponseNotRead:
        pass
    else:
        for start in range(0, len(held), piece):
            yield held[start : start + piece]
        return
    encoding = _encoding(response)
    inflater = _Inflater(encoding, piece) if encoding is not None else None
    async for chunk in response.aiter_raw():
        if inflater is not None:
            for out in inflater.feed(chunk):
                yield out
            continue
        for start in range(0, len(chunk), piece):
            yield chunk[start : start + piece]
    if inflater is not None:
        for out in inflater.finish():
            yield out


async def read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the decoded body, and whether there was more (left unread)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in iter_decoded(response):
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts)[:limit], True
    return b"".join(parts), False
