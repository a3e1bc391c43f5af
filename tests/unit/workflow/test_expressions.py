"""Condition expressions: what they compute, and what they refuse."""

from __future__ import annotations

from typing import Any

import pytest

from shared.workflow.expressions import (
    MAX_REGEX_LENGTH,
    ExpressionError,
    compile_condition,
)
from shared.workflow.templates import Reference

DATA: dict[str, Any] = {
    "value": 15,
    "input.name": "Hello World",
    "input.tags": ["urgent", "billing"],
    "input.profile": {"vip": True},
    "input.age": "17",
    "llm-1.text": "  Positive! ",
    "missing": None,
    "zero": 0,
}


def evaluate(expression: str) -> bool:
    return compile_condition(expression).evaluate(lambda ref: DATA.get(ref.dotted))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{value} > 10", True),
        ("{value} > 20", False),
        ("{value} > 10 and {value} < 12", False),
        ("{value} > 20 or {value} == 15", True),
        ("not {value} > 10", False),
        ("10 < {value} <= 15", True),
        ("'urgent' in {input.tags}", True),
        ("'spam' not in {input.tags}", True),
        ("'World' in {input.name}", True),
        ("'vip' in {input.profile}", True),
        ("'x' in {missing}", False),
        ("lower({input.name}) == 'hello world'", True),
        ("upper({input.name}) == 'HELLO WORLD'", True),
        ("strip({llm-1.text}) == 'Positive!'", True),
        ("contains(lower({llm-1.text}), 'positive')", True),
        ("startswith({input.name}, 'Hello') and endswith({input.name}, 'World')", True),
        ("matches({input.name}, '^H[a-z]+ W')", True),
        ("matches({input.name}, '^W')", False),
        ("len({input.tags}) == 2 and len({missing}) == 0", True),
        ("int({input.age}) + 1 == 18", True),
        ("float('2.5') * 2 == 5", True),
        ("str({value}) == '15'", True),
        ("abs(-3) == 3 and min(1, 2) == 1 and max([4, 9]) == 9", True),
        ("round(2.567, 2) == 2.57", True),
        ("{missing} == null", True),
        ("{missing} is None", True),
        ("{input.profile}['vip'] == true", True),
        ("{input.tags}[0] == 'urgent'", True),
        ("false or null or true", True),
        ("True and not False and None is None", True),
        ("{value} % 2 == 1 and {value} // 2 == 7 and 2 ** 3 == 8", True),
        ("'yes' if {value} > 10 else 'no'", True),
        # Numeric text compares as a number: LLM output is text.
        ("{input.age} < 18", True),
        ("'15' == {value}", True),
        ("bool('false')", False),
        ("bool('yes')", True),
        ("{zero}", False),
        ("'{value}' == '{' + 'value}'", True),  # references inside quotes are literal
    ],
)
def test_evaluation(expression: str, expected: bool) -> None:
    assert evaluate(expression) is expected


def test_references_are_listed_once_each() -> None:
    condition = compile_condition("{value} > 1 and {value} < {llm-1.usage.total}")
    assert condition.references == [
        Reference("{value}", "value", ()),
        Reference("{llm-1.usage.total}", "llm-1", ("usage", "total")),
    ]


def test_a_compiled_condition_is_reusable_with_other_values() -> None:
    condition = compile_condition("{value} > 10")
    assert condition.evaluate(lambda _: 11) is True
    assert condition.evaluate(lambda _: 9) is False


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "{value}.__class__",
        "{value}.__class__.__mro__",
        "{input.name}.upper()",
        "(lambda: 1)()",
        "(lambda x: x)({value})",
        "[x for x in {input.tags}]",
        "{x: 1 for x in [1]}",
        "any(x for x in [1])",
        "open('/etc/passwd')",
        "eval('1')",
        "_secret > 1",
        "value > 10",  # a bare name: references need braces
        "len(obj={value})",
        "max(*{input.tags})",
        "~{value}",
        "{value} << 2",
        "b'bytes' == 1",
        "{value} >",
        "",
        "x = 1",
        "matches({input.name}, '" + "a" * (MAX_REGEX_LENGTH + 1) + "')",
        "matches({input.name}, '(unclosed')",
        "1 + " * 600 + "1",
    ],
)
def test_refused_when_compiled(expression: str) -> None:
    with pytest.raises(ExpressionError):
        compile_condition(expression)


def test_dynamic_regex_that_is_too_long_fails_when_evaluated() -> None:
    condition = compile_condition("matches({input.name}, {value})")
    with pytest.raises(ExpressionError):
        condition.evaluate(lambda ref: "x" if ref.root == "input" else "a" * 500)


@pytest.mark.parametrize(
    "expression",
    ["{missing} > 10", "{value} / 0 > 1", "int('abc') > 1", "2 ** 100000 > 1"],
)
def test_runtime_failures_are_expression_errors(expression: str) -> None:
    with pytest.raises(ExpressionError):
        evaluate(expression)


def test_errors_speak_both_languages() -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_condition("value > 10")
    assert "unknown name value" in caught.value.render("en")
    assert "未知名称 value" in caught.value.render("zh")
    assert "{value}" in caught.value.render("zh")


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("{missing} > 10", "evaluation failed: '>' not supported"),
        ("{value} / 0 > 1", "division by zero"),
        ("{input.profile}['nope'] == 1", "no such key: nope"),
        ("{input.tags}[5] == 1", "index out of range"),
        ("'%d' % 'x' == ''", "evaluation failed: %d format"),
    ],
)
def test_evaluation_errors_are_worded_without_python_names(expression: str, says: str) -> None:
    with pytest.raises(ExpressionError) as failed:
        evaluate(expression)
    message = failed.value.render("en")
    assert says in message
    assert "Error" not in message


def test_percent_formatting_and_list_building_work_within_the_bounds() -> None:
    assert evaluate("'%s scored %.1f%%' % ({input.name}, 97.25) == 'Hello World scored 97.2%'")
    assert evaluate("'%(vip)s' % {input.profile} == 'True'")
    assert evaluate("[{value}] * 3 + [1] == [15, 15, 15, 1] and ({value},) * 2 == (15, 15)")
