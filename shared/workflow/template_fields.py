"""Which fields of each node type's `data` are templates, so every one of them is checked (and,
in the executor, rendered). Read from the raw `data`, so references are checked even when
another field of the node is invalid.

A condition's `expression` holds references too, but inside an expression: it is read by
`expressions.compile_condition`, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

# Dotted field paths; `*` is every item of a list. Every string inside a listed field, at any
# depth, is a template (mapping values, nested objects, list items).
TEMPLATE_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "start": (),
    "input": (),
    "llm": ("prompt", "system_prompt"),
    "condition": (),
    "transform": (),  # by mode, see _transform_fields
    "loop": ("items_path", "output"),
    "agent": ("prompt", "system_prompt", "tools.*.data_source_id"),
    "output": ("mapping", "value"),
    "end": ("output",),
}
_TRANSFORM_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "template": ("template",),
    "jmespath": ("source",),
    "mapping": ("mapping",),
    "data_source": ("data_source_id", "parameters"),
}
# Fields that, when absent, still read the upstream output: they mean "{value}".
_IMPLICIT_VALUE: Final[dict[str, tuple[str, ...]]] = {
    "output": ("mapping", "value"),
    "end": ("output",),
}


@dataclass(frozen=True)
class TemplateText:
    field: str  # where in `data`, dotted: "prompt", "mapping.summary", "tools.0.data_source_id"
    text: str
    # True for text evaluated inside a loop's body after each iteration (a loop's `output`).
    in_body: bool = False
    # True when the field is absent and its default, "{value}", applies.
    implicit: bool = False


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _strings(item, f"{where}.{position}")


def _select(value: Any, segments: list[str], where: str) -> Iterator[tuple[str, Any]]:
    if not segments:
        yield where, value
        return
    head, rest = segments[0], segments[1:]
    prefix = f"{where}." if where else ""
    if head == "*":
        if isinstance(value, list):
            for position, item in enumerate(value):
                yield from _select(item, rest, f"{prefix}{position}")
    elif isinstance(value, dict) and head in value:
        yield from _select(value[head], rest, f"{prefix}{head}")


def template_fields(node_type: str, data: dict[str, Any]) -> list[str]:
    """The template field paths of a node of `node_type`, given its data (transform: by mode)."""
    if node_type == "transform":
        mode = data.get("mode", "template")
        return list(_TRANSFORM_FIELDS.get(mode, ()))
    return list(TEMPLATE_FIELDS.get(node_type, ()))


def template_texts(node_type: str, data: dict[str, Any]) -> list[TemplateText]:
    """Every template string in a node's `data`, with where it is."""
    texts: list[TemplateText] = []
    for pattern in template_fields(node_type, data):
        for where, value in _select(data, pattern.split("."), ""):
            for field, text in _strings(value, where):
                if node_type == "loop" and pattern == "items_path":
                    # A bare path `items` is the reference `{items}`.
                    text = text if "{" in text else f"{{{text}}}"
                in_body = node_type == "loop" and pattern == "output"
                texts.append(TemplateText(field, text, in_body=in_body))
    implicit = _IMPLICIT_VALUE.get(node_type, ())
    if node_type == "transform" and data.get("mode") == "jmespath" and "source" not in data:
        implicit = ("source",)
    if implicit and all(data.get(name) is None for name in implicit):
        texts.append(TemplateText(implicit[0], "{value}", implicit=True))
    return texts
