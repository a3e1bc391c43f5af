"""Finding and rendering `{...}` references in strings."""

from __future__ import annotations

from typing import Any

import pytest

from shared.workflow.templates import (
    Reference,
    find_references,
    lookup_path,
    render,
    render_value,
    single_reference,
)

VALUES: dict[str, Any] = {
    "input": {"text": "你好", "items": [1, 2]},
    "input.text": "你好",
    "input.items": [1, 2],
    "value": 15,
    "llm-1.usage.total_tokens": 42,
    "flag": True,
    "nothing": None,
}


def resolve(reference: Reference) -> Any:
    return VALUES.get(reference.dotted)


def test_find_references_gives_root_and_path_in_order() -> None:
    found = find_references("{input} and {llm-1.usage.total_tokens} then {node.items.0}")
    assert found == [
        Reference("{input}", "input", ()),
        Reference("{llm-1.usage.total_tokens}", "llm-1", ("usage", "total_tokens")),
        Reference("{node.items.0}", "node", ("items", "0")),
    ]


def test_double_braces_are_literal_and_not_references() -> None:
    assert find_references("{{input}} {{ {value} }}") == [Reference("{value}", "value", ())]
    assert render("{{input}} is {value}", resolve) == "{input} is 15"
    assert render("{{{value}}}", resolve) == "{15}"


def test_braces_that_are_not_references_stay_literal() -> None:
    text = '返回 JSON:{"ok": true} 或 {a b} 或 {} 或 {x.}'
    assert find_references(text) == []
    assert render(text, resolve) == text


def test_references_accept_chinese_segments() -> None:
    assert find_references("{input.标题}") == [Reference("{input.标题}", "input", ("标题",))]


def test_render_turns_non_strings_into_json_keeping_chinese() -> None:
    rendered = render("{input} {value} {flag} {nothing} {input.items}", resolve)
    assert rendered == '{"text": "你好", "items": [1, 2]} 15 true null [1, 2]'


def test_render_value_keeps_the_type_of_a_lone_reference() -> None:
    assert render_value("{input.items}", resolve) == [1, 2]
    assert render_value("{value}", resolve) == 15
    assert render_value(" {value}", resolve) == " 15"


def test_render_value_recurses_into_objects_and_lists_but_not_keys() -> None:
    template = {"{value}": ["{input.text}", {"n": "{value}", "t": "n={value}"}], "k": 3}
    assert render_value(template, resolve) == {
        "{value}": ["你好", {"n": 15, "t": "n=15"}],
        "k": 3,
    }


def test_single_reference_only_for_exactly_one() -> None:
    assert single_reference("{a.b}") == Reference("{a.b}", "a", ("b",))
    assert single_reference("{a}{b}") is None
    assert single_reference("{{a}}") is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ((), {"a": [{"b": 1}, {"b": 2}]}),
        (("a", "1", "b"), 2),
        (("a", "-1", "b"), 2),
        (("a", "5"), None),
        (("a", "x"), None),
        (("missing",), None),
        (("a", "0", "b", "c"), None),
    ],
)
def test_lookup_path(path: tuple[str, ...], expected: Any) -> None:
    assert lookup_path({"a": [{"b": 1}, {"b": 2}]}, path) == expected
