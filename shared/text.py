"""Text shown to people (messages, logs): cut to a bound so one value cannot flood them."""

from __future__ import annotations


def shortened(text: str, limit: int) -> str:
    """`text` as it is when it has at most `limit` characters, else its first `limit` and "…"."""
    return text if len(text) <= limit else text[:limit] + "…"
