"""Database values as JSON: what query results hold whatever the driver returned.

- datetime, date, time: ISO 8601 strings (`2024-05-01T08:30:00+00:00`; an aware value keeps its
  offset, a naive one has none);
- Decimal: a string in plain notation (`"12.50"`), exact: a JSON number goes through a binary
  float in most readers and loses digits (money, bigint-sized numerics); NaN/Infinity as
  "NaN"/"Infinity";
- float NaN/±Infinity: the strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers);
- bytes, bytearray, memoryview: standard base64 (RFC 4648, with padding), without any prefix:
  binary columns are rarely text, and the column's type tells the reader it is binary;
- UUID, IP addresses and networks: their usual text;
- timedelta (PostgreSQL interval, MySQL TIME): total seconds as a float;
- sets and tuples: lists; lists and dicts: converted recursively (PostgreSQL arrays and json
  come back from the driver as lists and dicts already);
- anything else unknown: `str(value)`.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_TEXT_TYPES = (
    uuid.UUID,
    ipaddress.IPv4Address,
    ipaddress.IPv6Address,
    ipaddress.IPv4Network,
    ipaddress.IPv6Network,
    ipaddress.IPv4Interface,
    ipaddress.IPv6Interface,
)


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def json_safe(value: Any) -> Any:
    """`value` made of JSON types only (str, int, float, bool, None, list, dict with str keys)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        if value.is_nan():
            return "NaN"
        if value.is_infinite():
            return "Infinity" if value > 0 else "-Infinity"
        return format(value, "f")  # never exponent notation: 0E-10 reads as 0.0000000000
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, _TEXT_TYPES):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(item) for item in items]
    return str(value)
