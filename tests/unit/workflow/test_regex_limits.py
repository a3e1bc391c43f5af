"""`matches()` patterns: what their compile cost counts, that patterns under the limit compile
quickly whatever their shape, and that ordinary patterns keep working. The attack itself
(a pattern whose compile held the process for minutes) is in test_hostile_inputs.py, run in
a subprocess so that a regression cannot hang the suite."""

from __future__ import annotations

import time

import pytest

from shared.workflow.bounded_regex import (
    MAX_REGEX_COST,
    MAX_REGEX_LENGTH,
    compile_pattern,
    pattern_cost,
)
from shared.workflow.expressions import ExpressionError, compile_condition


@pytest.mark.parametrize(
    ("pattern", "over"),
    [
        ("(?:(?:(?:a{100}){100}){100}){100}", True),  # 10**8 copies: minutes in regex
        ("(?:(?:a{100}){100}){100}", True),
        ("a{20000}", True),
        ("(?:a{0,10000})*", True),
        ("(?:(a)){5000}", True),  # capturing groups cost regex more than plain nodes
        ("(?:" * 13 + "a" + ")*" * 13, False),  # deep, but each level one copy
        ("(?:" * 15 + "a" + "){2}" * 15, True),  # nesting makes regex superlinear
        ("^[^@]+@example[.]com$", False),
        (r"\d{1,3}(?:\.\d{1,3}){3}", False),
        (".{0,5000}", False),
        ("(?:[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+){1,50}", False),
    ],
)
def test_the_cost_counts_expansion_and_nesting(pattern: str, over: bool) -> None:
    assert (pattern_cost(pattern) > MAX_REGEX_COST) is over


def test_counting_stops_early_for_an_enormous_pattern() -> None:
    # 10**200 copies: the count stops past the limit instead of building a huge number.
    pattern = "(?:" * 50 + "a" + "){9999}" * 50
    assert len(pattern) > MAX_REGEX_LENGTH  # refused for its length anyway, and
    assert pattern_cost(pattern) > MAX_REGEX_COST  # the cost alone refuses it too


# The shapes that cost regex the most per unit of cost (found by a search over nesting depth,
# repeat counts, groups, alternations and lookarounds); `N` is sized to just under the limit.
COSTLIEST_SHAPES = [
    "(?:(?:(?:(?:(?P<n>a)(?P=n)){2}){2}){2}){N}",
    "(?:(?:(?P<n>a)(?P=n)|b){10}|b){N}",
    "(?:(?:(?:ab|b){2}|b){2}|b){N}",
    "(?:(?:(?:(?i:[a-z])|b){2}|b){2}|b){N}",
    "(?:(?:(?:(a)\\1){2}){2}){N}",
    "(?:(?:(?:(?=a)){2}){2}){N}",
    "(?:(a)|b){N}",
    "(?:(?:(?:(?:a{2}){2}){2}){2}){N}",
    "(?:(?:(?:(?:(?:(?:(?:(?:a)*){2})*){2})*){2})*){N}",
    "[\\w\\s\\d]{N}",
    "a{N}",
]


def _largest_under_the_limit(shape: str) -> str:
    low, high = 1, 10**6
    while low < high:
        middle = (low + high + 1) // 2
        if pattern_cost(shape.replace("N", str(middle))) <= MAX_REGEX_COST:
            low = middle
        else:
            high = middle - 1
    return shape.replace("N", str(low))


@pytest.mark.parametrize("shape", COSTLIEST_SHAPES)
def test_the_costliest_shapes_under_the_limit_compile_quickly(shape: str) -> None:
    pattern = _largest_under_the_limit(shape)
    assert pattern_cost(pattern) > MAX_REGEX_COST // 2, pattern  # near the limit indeed
    started = time.monotonic()
    compile_pattern(pattern)
    # A generous bound (at most about 30 ms measured): the attack took minutes.
    assert time.monotonic() - started < 2.0, pattern


def test_a_refused_pattern_says_why_in_both_languages() -> None:
    with pytest.raises(ExpressionError) as refused:
        compile_condition("matches({x}, '(?:(?:a{100}){100}){100}')")
    assert "repeats too much" in refused.value.render("en")
    assert str(MAX_REGEX_COST) in refused.value.render("en")
    assert "重复次数过多" in refused.value.render("zh")


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        ("^[^@]+@example[.]com$", "x@example.com", True),
        (r"^\d{1,3}(?:\.\d{1,3}){3}$", "10.0.0.1", True),
        (r"^\w+$", "杭州西湖", True),  # Unicode \w: the documented Python syntax
        (r"^(?=.*\d)(?!.*error)", "code 42 ok", True),  # lookarounds
        (r"(\w)\1", "hello", True),  # backreferences
        (r"(?i)^YES\b", "yes, please", True),
        (".{0,5000}z", "a" * 100 + "z", True),
        ("^a{3}$", "aaaa", False),
    ],
)
def test_ordinary_patterns_keep_working(pattern: str, text: str, found: bool) -> None:
    condition = compile_condition("matches({text}, {pattern})")
    values = {"text": text, "pattern": pattern}
    assert condition.evaluate(lambda ref: values[ref.root]) is found


def test_compiled_patterns_are_cached() -> None:
    assert compile_pattern("^ab+c$") is compile_pattern("^ab+c$")


def test_invalid_patterns_are_refused_clearly() -> None:
    for pattern in ("(unclosed", "a{2,1}", "(?<=a+)b", "*a"):
        with pytest.raises(ExpressionError) as refused:
            compile_pattern(pattern)
        assert "invalid regular expression" in refused.value.render("en")
