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
from typing import Any, Final

from shared.i18n import LocalizedError, Message

# What one rendering (a node's template field, every string inside it together) may produce,
# in characters of JSON text. References copy values, so without a bound a chain of nodes
# each rendering "{prev}{prev}" doubles the size at every step.
MAX_RENDERED_CHARS: Final = 1_000_000
# Nesting of a template value (objects and lists inside a mapping): rendering recurses.
MAX_TEMPLATE_DEPTH: Final = 64

_TOO_LARGE = Message(
    "模板渲染结果过大(最多 {limit} 个字符)",
    "the rendered template is too large (at most {limit} characters)",
)
_TOO_DEEP = Message(
    "模板嵌套过深(最多 {limit} 层)", "the template is nested too deeply (at most {limit} levels)"
)

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


class TemplateError(LocalizedError, ValueError):
    """A template that cannot be rendered within the bounds; localized."""


class _Budget:
    """Characters left for one rendering; counting stops as soon as they run out, so
    measuring a huge (or hugely shared) value costs at most the budget."""

    def __init__(self, limit: int = MAX_RENDERED_CHARS) -> None:
        self.limit = limit
        self.left = limit

    def spend(self, chars: int) -> None:
        self.left -= chars
        if self.left < 0:
            raise TemplateError(_TOO_LARGE, limit=self.limit)

    def spend_value(self, value: Any) -> None:
        """About the length of `value` as JSON text, walked without recursion."""
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                self.spend(len(item) + 2)
            elif isinstance(item, dict):
                self.spend(2 + 4 * len(item) + sum(len(str(key)) for key in item))
                stack.extend(item.values())
            elif isinstance(item, list | tuple):
                self.spend(2 + len(item))
                stack.extend(item)
            elif isinstance(item, int) and not isinstance(item, bool):
                self.spend(item.bit_length() // 3 + 2)  # decimal digits, a little over
            else:
                self.spend(24)  # a float, bool or null


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


def render(text: str, resolve: Callable[[Reference], Any], budget: _Budget | None = None) -> str:
    """`text` with every reference replaced by its value as text and escapes unescaped.
    TemplateError when the result would exceed MAX_RENDERED_CHARS."""
    budget = budget or _Budget()
    parts: list[str] = []
    position = 0
    for start, end, token in _tokens(text):
        parts.append(text[position:start])
        if isinstance(token, Reference):
            value = resolve(token)
            if not isinstance(value, str):
                budget.spend_value(value)  # before to_text builds it
            token = to_text(value)
        budget.spend(len(parts[-1]) + len(token))
        parts.append(token)
        position = end
    parts.append(text[position:])
    return "".join(parts)


def render_value(
    value: Any, resolve: Callable[[Reference], Any], budget: _Budget | None = None, depth: int = 0
) -> Any:
    """Render every string inside `value` (dicts and lists recursively; keys are literal).

    A string that is exactly one reference yields the referenced value itself, keeping its
    type: `"{input.items}"` gives the list, not its JSON text. TemplateError when the result
    would exceed MAX_RENDERED_CHARS or `value` nests deeper than MAX_TEMPLATE_DEPTH.
    """
    budget = budget or _Budget()
    if depth > MAX_TEMPLATE_DEPTH:
        raise TemplateError(_TOO_DEEP, limit=MAX_TEMPLATE_DEPTH)
    if isinstance(value, str):
        reference = single_reference(value)
        if reference is None:
            return render(value, resolve, budget)
        found = resolve(reference)
        budget.spend_value(found)  # shared, yet copied wherever the output is stored
        return found
    if isinstance(value, dict):
        return {key: render_value(item, resolve, budget, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, resolve, budget, depth + 1) for item in value]
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
