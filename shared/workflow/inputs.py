"""Checking an execution's input_data against the fields input nodes declare, so a bad input
fails the run at once with every problem named, and defaults fill what was left out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.i18n import Language, Message
from shared.workflow.nodes import InputField, value_matches_type

_MISSING = Message("缺少必填输入 {name}", "required input {name} is missing")
_WRONG_TYPE = Message("输入 {name} 应为 {type}", "input {name} must be of type {type}")


class InputDataError(ValueError):
    """input_data does not satisfy the declared fields; `problems` holds each (field, message)."""

    def __init__(self, problems: list[tuple[str, Message, dict[str, Any]]]) -> None:
        self.problems = problems
        super().__init__(self.render("en"))

    def render(self, language: Language) -> str:
        return "; ".join(message.render(language, **params) for _, message, params in self.problems)


def apply_input_fields(
    fields: Iterable[InputField], input_data: Mapping[str, Any]
) -> dict[str, Any]:
    """input_data with defaults filled in; undeclared keys pass through unchanged.

    A null value counts as absent. Raises InputDataError naming every problem.
    """
    result = dict(input_data)
    problems: list[tuple[str, Message, dict[str, Any]]] = []
    for declared in fields:
        value = result.get(declared.name)
        if value is None:
            if declared.default is not None:
                result[declared.name] = declared.default
            elif declared.required:
                problems.append((declared.name, _MISSING, {"name": declared.name}))
        elif not value_matches_type(value, declared.type):
            problems.append(
                (declared.name, _WRONG_TYPE, {"name": declared.name, "type": declared.type})
            )
    if problems:
        raise InputDataError(problems)
    return result
