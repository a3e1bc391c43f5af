"""Checking input_data against declared input fields."""

from __future__ import annotations

import pytest

from shared.workflow.inputs import InputDataError, apply_input_fields
from shared.workflow.nodes import InputField

FIELDS = [
    InputField(name="text", required=True),
    InputField(name="lang", default="English"),
    InputField(name="n", type="integer"),
    InputField(name="ratio", type="number"),
]


def test_defaults_fill_in_and_undeclared_keys_pass_through() -> None:
    assert apply_input_fields(FIELDS, {"text": "hi", "extra": 1, "ratio": 2}) == {
        "text": "hi",
        "lang": "English",
        "extra": 1,
        "ratio": 2,
    }


def test_every_problem_is_named_in_both_languages() -> None:
    with pytest.raises(InputDataError) as caught:
        apply_input_fields(FIELDS, {"text": None, "n": True, "ratio": "2"})
    assert [name for name, _, _ in caught.value.problems] == ["text", "n", "ratio"]
    assert "required input text is missing" in caught.value.render("en")
    assert "缺少必填输入 text" in caught.value.render("zh")
