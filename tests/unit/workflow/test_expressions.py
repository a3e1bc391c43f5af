"""Condition expressions: what they compute, and what they refuse."""

from __future__ import annotations

import re
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
        ("{missing} > 10", "cannot compare null > 10 (number)"),
        ("{value} / 0 > 1", "division by zero"),
        ("{input.profile}['nope'] == 1", '{"vip": true} (object) has no key "nope" (text)'),
        ("{input.tags}[5] == 1", "index 5 (number) is out of range"),
        ("'%d' % 'x' == ''", 'cannot compute "%d" (text) % "x" (text)'),
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


# -- failures a user can act on: no Python names, values and kinds in words --------------------

# What Python's own messages say and a user never wrote: class names, exception names,
# internals. None of it may reach a message.
PYTHON_WORDS = re.compile(
    r"[A-Za-z]*(Error|Exception)\b|Traceback|NoneType|'(dict|int|str|list|float|bool|tuple)'"
    r"|instances of|<lambda>|positional argument|not subscriptable|__\w+__|not iterable"
    r"|unhashable|operand type"
)
KINDS_OF_VALUES: list[Any] = [None, True, 7, 2.5, "abc", [1, 2], {"a": 1}]
FAILING = [
    "{x} > 10",
    "{x} < 'abc'",
    "{x} >= [1]",
    "{x} + 1",
    "{x} - 'a'",
    "{x} * {x}",
    "{x} / 2",
    "{x} % [1]",
    "-{x}",
    "{x}[0]",
    "{x}['k']",
    "{x}[1:2:0]",
    "abs({x})",
    "round({x})",
    "min({x})",
    "max({x}, 'a')",
    "len({x}, 1)",
    "int({x})",
    "float({x})",
    "[1] in {x}",
    "matches({x}, '(')",
]


def python_words(message: str) -> list[str]:
    return [match.group(0) for match in PYTHON_WORDS.finditer(message)]


@pytest.mark.parametrize("expression", FAILING)
@pytest.mark.parametrize("value", KINDS_OF_VALUES, ids=lambda v: type(v).__name__)
def test_no_failure_speaks_python(expression: str, value: Any) -> None:
    try:
        compile_condition(expression).evaluate(lambda ref: value)
    except ExpressionError as failed:
        for language in ("zh", "en"):
            message = failed.render(language)
            assert python_words(message) == [], message
            assert message


def test_an_incompatible_comparison_names_both_values_their_kinds_and_a_way_out() -> None:
    condition = compile_condition("{value} > 10")
    with pytest.raises(ExpressionError) as failed:
        condition.evaluate(lambda ref: {"amount": 15})
    assert failed.value.render("en") == (
        'cannot compare {"amount": 15} (object) > 10 (number): > compares two numbers or two '
        "texts. A whole object cannot be compared or computed with; to use one of its fields, "
        "reference it by its path, e.g. {input.field}"
    )
    assert failed.value.render("zh") == (
        '无法比较 {"amount": 15}(对象) > 10(数字):> 只能比较两个数字或两个文本。'
        "整个对象不能这样比较或计算;要使用其中的字段,请用路径引用,例如 {input.字段名}"
    )


def test_long_operands_are_cut_short() -> None:
    with pytest.raises(ExpressionError) as failed:
        compile_condition("{value} > 10").evaluate(lambda ref: "x" * 10_000)
    message = failed.value.render("en")
    assert '"' + "x" * 79 + "…" in message
    assert len(message) < 300


def test_a_missing_value_says_what_null_means() -> None:
    with pytest.raises(ExpressionError) as failed:
        compile_condition("{input.age} >= 18").evaluate(lambda ref: None)
    assert "null means the reference found no value" in failed.value.render("en")
    assert "null 表示引用的值不存在" in failed.value.render("zh")


@pytest.mark.parametrize(
    ("expression", "written"),
    [
        ("{'a': 1} == {x}", "{'key': value}"),
        ("{1, 2} == {x}", "{a, b}"),
        ("{x} | 1", "|"),
        ("{x} & 1", "&"),
        ("{x} ^ 1", "^"),
        ("{x} >> 1", ">>"),
        ("{x} @ 1", "@"),
        ("(y := 1)", ":="),
        ("[*{x}]", "*x"),
    ],
)
def test_refused_constructs_are_named_as_written(expression: str, written: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        compile_condition(expression)
    for language in ("zh", "en"):
        message = refused.value.render(language)
        assert written in message
        assert python_words(message) == []
        assert not re.search(r"\b(Dict|Set|Bit\w+|RShift|MatMult|NamedExpr)\b", message)
