"""Values as a user reads them in a message: the kind in plain words (text, number, object,
list, boolean, null; never a Python class name such as `dict` or `NoneType`) and the value
itself as JSON, shortened. Used wherever a node's failure names the data it failed on.
"""

from __future__ import annotations

import json
from typing import Any, Final

from shared.i18n import Language, Message
from shared.text import shortened

# Characters of a value shown in a message before it is cut with "…".
SHOWN_CHARS: Final = 80

KIND_WORDS: Final[dict[str, Message]] = {
    "null": Message("空值", "null"),
    "boolean": Message("布尔值", "boolean"),
    "number": Message("数字", "number"),
    "text": Message("文本", "text"),
    "list": Message("列表", "list"),
    "object": Message("对象", "object"),
    "other": Message("值", "value"),
}


def kind_of(value: Any) -> str:
    """The JSON kind of `value`: null, boolean, number, text, list, object (else other)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "other"


def kind_word(value: Any, language: Language) -> str:
    return KIND_WORDS[kind_of(value)].render(language)


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """`value` as JSON text (texts quoted, so `"15"` and `15` differ), cut after `limit`."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, RecursionError):  # a list holding itself cannot come from JSON
        text = "…"
    return shortened(text, limit)


def described(value: Any, language: Language) -> str:
    """`"abc"(文本)` / `"abc" (text)`: the value shortened, then its kind (null says it)."""
    if value is None:
        return "null" if language == "en" else "null(空值)"
    if language == "en":
        return f"{shown(value)} ({kind_word(value, 'en')})"
    return f"{shown(value)}({kind_word(value, 'zh')})"


def filled(message: Message, **params: Any) -> Message:
    """`message` with `params` filled in per language: a Message parameter is rendered in the
    language of the text it goes into, anything else as it is."""
    return Message(message.render("zh", **params), message.render("en", **params))


def describe_values(*values: Any, separator: Message | None = None) -> Message:
    """Several values, each with its kind, in both languages: `1(数字)、"a"(文本)`."""
    separator = separator or Message("、", ", ")
    return Message(
        separator.zh.join(described(value, "zh") for value in values),
        separator.en.join(described(value, "en") for value in values),
    )
