"""References in strings: `{input}`, `{value}`, `{node_id.field.path}`, `{item.name}`.

Grammar: a reference is `{` segment (`.` segment)* `}` where a segment is letters (any script),
digits, `_` or `-`. `{{` and `}}` are literal braces. Any other brace is literal text, so JSON
written in a prompt (`{"a": 1}`) needs no escaping. What a reference *means* is decided in
`references.py`; this module only finds and substitutes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

_SEGMENT = r"[\w-]+"
_PATH = rf"{_SEGMENT}(?:\.{_SEGMENT})*"
# Escapes come first in the alternation so `{{input}}` is the literal text "{input}".
_TOKEN = re.compile(rf"\{{\{{|\}}\}}|\{{({_PATH})\}}")
_SINGLE = re.compile(rf"\{{({_PATH})\}}")


@dataclass(frozen=True)
class Reference:
    """One reference as written. `raw` is the source text with its braces: "{llm-1.text}"."""

    raw: str
    root: str
    path: tuple[str, ...]

    @classmethod
    def parse(cls, dotted: str) -> Reference:
        root, *path = dotted.split(".")
        return cls(raw="{" + dotted + "}", root=root, path=tuple(path))

    @property
    def dotted(self) -> str:
        return ".".join((self.root, *self.path))


def _tokens(text: str) -> Iterator[tuple[int, int, Reference | str]]:
    """(start, end, reference-or-literal-brace) for every reference and escape in `text`."""
    for match in _TOKEN.finditer(text):
        dotted = match.group(1)
        token: Reference | str = Reference.parse(dotted) if dotted else match.group(0)[0]
        yield match.start(), match.end(), token


def find_references(text: str) -> list[Reference]:
    """Every reference in `text`, in order, repeats included."""
    return [token for _, _, token in _tokens(text) if isinstance(token, Reference)]


def single_reference(text: str) -> Reference | None:
    """The reference if `text` is exactly one reference and nothing else."""
    match = _SINGLE.fullmatch(text)
    return Reference.parse(match.group(1)) if match else None


def to_text(value: Any) -> str:
    """How a value reads inside a string: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render(text: str, resolve: Callable[[Reference], Any]) -> str:
    """`text` with every reference replaced by its value as text and escapes unescaped."""
    parts: list[str] = []
    position = 0
    for start, end, token in _tokens(text):
        parts.append(text[position:start])
        parts.append(to_text(resolve(token)) if isinstance(token, Reference) else token)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def render_value(value: Any, resolve: Callable[[Reference], Any]) -> Any:
    """Render every string inside `value` (dicts and lists recursively; keys are literal).

    A string that is exactly one reference yields the referenced value itself, keeping its
    type: `"{input.items}"` gives the list, not its JSON text.
    """
    if isinstance(value, str):
        reference = single_reference(value)
        return resolve(reference) if reference else render(value, resolve)
    if isinstance(value, dict):
        return {key: render_value(item, resolve) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, resolve) for item in value]
    return value


def lookup_path(value: Any, path: tuple[str, ...]) -> Any:
    """Follow `path` into dicts (by key) and lists (by index, negative allowed); None if absent."""
    current = value
    for segment in path:
        if isinstance(current, dict):
            if segment not in current:
                return None
            current = current[segment]
        elif isinstance(current, list | tuple):
            try:
                current = current[int(segment)]
            except (ValueError, IndexError):
                return None
        else:
            return None
    return current
