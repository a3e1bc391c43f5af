"""Sizes measured before a value is built: the `%` estimate is never below what Python
builds, and a value's size stops being counted soon after its limit, however it is shared."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from shared.workflow.value_sizes import FormatRefused, percent_format_size, value_size

LIMIT = 100_000

_VALUES: list[Any] = [
    0,
    -7,
    2**200,
    -(10**300),
    True,
    None,
    1.5,
    -1e308,
    float("inf"),
    "",
    "abc",
    "杭州",
    "a'b\"c\\d",
    "\x00\n\t\x7f",
    "\u2028\U0001f600",
    [1, "x", [None, 2.5]],
    ("t", 1),
    {"k": ["v", {"n": 1}], "z": None},
]


def _random_format(rng: random.Random) -> tuple[str, tuple[Any, ...]]:
    parts: list[str] = []
    arguments: list[Any] = []
    for _ in range(rng.randint(1, 4)):
        parts.append(rng.choice(["", "text ", "中文", "%%"]))
        flags = "".join(rng.sample("-+ #0", rng.randint(0, 2)))
        width = rng.choice(["", "5", "12", "*"])
        precision = rng.choice(["", ".0", ".3", ".20", ".*"])
        conversion = rng.choice("sradiuoxXeEfFgGc")
        if width == "*":
            arguments.append(rng.choice([3, -9, 0]))
        if precision == ".*":
            arguments.append(rng.choice([0, 4]))
        value: Any
        if conversion in "diuoxXc":
            value = rng.choice([0, -7, 2**200, True, 65]) if conversion != "c" else 65
        elif conversion in "eEfFgG":
            value = rng.choice([0, 1.5, -1e308, 10**300, 3])
        else:
            value = rng.choice(_VALUES)
        parts.append(f"%{flags}{width}{precision}{conversion}")
        arguments.append(value)
    return "".join(parts), tuple(arguments)


def test_the_percent_estimate_is_never_below_the_formatted_length() -> None:
    rng = random.Random(13)
    checked = 0
    for _ in range(5000):
        fmt, arguments = _random_format(rng)
        try:
            formatted = fmt % arguments
        except (TypeError, ValueError, OverflowError):
            continue  # Python refuses it; the evaluator lets Python say so
        assert percent_format_size(fmt, arguments, LIMIT) >= len(formatted), (fmt, arguments)
        checked += 1
    assert checked > 2500


@pytest.mark.parametrize(
    ("fmt", "arguments", "size"),
    [
        ("%099999999d", 1, 99_999_999),
        ("%.99999999f", 1.0, 100_000_000),
        ("%*s", (10**8, "x"), 10**8),
        ("%(a)0100001d", {"a": 1}, 100_001),
        ("%0999999999999999999999d", 1, 10**9),  # counted no further than that
    ],
)
def test_widths_and_precisions_count_before_anything_is_built(
    fmt: str, arguments: Any, size: int
) -> None:
    assert percent_format_size(fmt, arguments, LIMIT) >= size


@pytest.mark.parametrize(
    ("fmt", "arguments"),
    [("%d %d", (1,)), ("%y", 1), ("%(a)s", (1,)), ("%(a", {"a": 1}), ("%*d", ("x", 1)), ("%", 1)],
)
def test_formats_python_would_refuse_are_refused(fmt: str, arguments: Any) -> None:
    with pytest.raises(FormatRefused):
        percent_format_size(fmt, arguments, LIMIT)


def test_the_size_of_a_list_counts_every_item_of_every_list_inside() -> None:
    assert value_size("abc", LIMIT) == 3
    assert value_size([0] * 100_000, LIMIT) == 100_000
    assert value_size([[]] * 10, LIMIT) == 10
    assert value_size({"ab": [1, 2]}, LIMIT) == 1 + 2 + 2
    assert value_size([2**300], LIMIT) == 1 + 10


def test_measuring_a_hugely_shared_list_stops_at_the_limit() -> None:
    shared = [[0] * 100_000] * 100_000  # 10**10 items, 800 kB in memory
    started = time.monotonic()
    assert value_size(shared, LIMIT) > LIMIT
    assert percent_format_size("%s", (shared,), LIMIT) > LIMIT
    assert time.monotonic() - started < 5.0  # generous: a walk of 10**10 would take hours
