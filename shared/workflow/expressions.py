"""Condition expressions such as `{value} > 10 and contains(lower({llm-1.text}), 'yes')`.

Compiled once (references become placeholder names, the syntax tree is checked against a
whitelist), then evaluated by the bounded evaluator shared with the calculator tool
(shared/workflow/bounded_eval.py: parsing, arithmetic, sizes of built values) with the
comparisons and functions defined here; `matches()` patterns are bounded by
shared/workflow/bounded_regex.py.
Nothing here calls eval/exec, and no attribute of any value is ever reachable: attribute
syntax is refused outright, because string functions cover what users need and attributes are
the classic sandbox escape.
"""

from __future__ import annotations

import ast
import contextvars
import functools
import math
import operator
import re
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Final

from shared.i18n import Message
from shared.workflow.bounded_eval import (
    ARITHMETIC,
    CONSTRUCTS,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_VALUE_SIZE,
    ExpressionError,
    bounded_round,
    check_function,
    check_text,
    evaluate,
    failure,
    grown,
    parse,
    too_big,
)
from shared.workflow.bounded_regex import MAX_REGEX_COST, MAX_REGEX_LENGTH, compile_pattern
from shared.workflow.templates import Reference, to_text

__all__ = [
    "FUNCTIONS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_EXPRESSION_LENGTH",
    "MAX_INT_BITS",
    "MAX_REGEX_COST",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_SUBJECT_LENGTH",
    "MAX_VALUE_SIZE",
    "REGEX_BUDGET_S",
    "Condition",
    "ExpressionError",
    "compile_condition",
    "to_bool",
]

MAX_EXPRESSION_LENGTH: Final = 2000
MAX_REGEX_SUBJECT_LENGTH: Final = 100_000
# Nesting of the syntax tree: evaluation recurses, so `1+1+…+1` must not reach Python's limit.
MAX_DEPTH: Final = 100
# What all `matches()` calls of one evaluation may take together: a backtracking pattern
# (`(a|aa)+$`) on a short text is exponential, and conditions run in the orchestrator.
# Compiling is bounded separately (shared/workflow/bounded_regex.py).
REGEX_BUDGET_S: Final = 1.0

_SINGLE_REFERENCE = re.compile(r"\{([\w-]+(?:\.[\w-]+)*)\}")
_PLACEHOLDER_PREFIX: Final = "_ref"
# JSON spellings beside Python's, since users write JSON everywhere else in a workflow.
_LITERALS: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}
_FALSY_TEXT: Final = frozenset({"", "false", "0", "no", "off", "null", "none"})


_NOT_ALLOWED = Message("不允许使用 {what}", "{what} is not allowed")
_ATTRIBUTE = Message(
    "不允许访问属性 .{name}(请用 lower(x) 这样的函数)",
    "attribute access .{name} is not allowed (use functions such as lower(x))",
)
_UNKNOWN_NAME = Message(
    "未知名称 {name}(引用数据请写成 {{{name}}})",
    "unknown name {name} (write {{{name}}} to reference data)",
)
_UNDERSCORE = Message(
    "不允许使用以下划线开头的名称 {name}", "names starting with _ are refused: {name}"
)
_CONSTANT = Message("不支持的字面量 {value}", "unsupported literal {value}")
_SUBJECT_TOO_LONG = Message(
    "matches 的文本过长(最多 {limit} 个字符)", "text for matches too long (at most {limit} chars)"
)
_REGEX_TIMEOUT = Message(
    "matches 超时(正则表达式回溯过多,最多 {limit} 秒)",
    "matches timed out (the regular expression backtracks too much; at most {limit} s)",
)
_CONVERSION = Message("无法把 {value} 转换为 {kind}", "cannot convert {value} to {kind}")


# -- functions available in expressions ---------------------------------------------------


# When the current evaluation's regex budget runs out (monotonic seconds); None outside one.
_regex_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "regex_deadline", default=None
)


def _matches(text: Any, pattern: Any) -> bool:
    subject = to_text(text)
    if len(subject) > MAX_REGEX_SUBJECT_LENGTH:
        raise ExpressionError(_SUBJECT_TOO_LONG, limit=MAX_REGEX_SUBJECT_LENGTH)
    compiled = compile_pattern(to_text(pattern))
    deadline = _regex_deadline.get()
    remaining = REGEX_BUDGET_S if deadline is None else deadline - time.monotonic()
    try:
        if remaining <= 0:
            raise TimeoutError
        return compiled.search(subject, timeout=remaining) is not None
    except TimeoutError:
        raise ExpressionError(_REGEX_TIMEOUT, limit=REGEX_BUDGET_S) from None


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return to_text(item) in container
    if isinstance(container, dict):
        return isinstance(item, Hashable) and item in container  # a list is never a key
    if isinstance(container, list | tuple):
        return item in container
    return to_text(item) in to_text(container)


def _length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    return len(to_text(value))


def _to_int(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    try:
        if isinstance(value, float):
            return int(value)
        text = to_text(value).strip()
        try:
            number = int(text)
        except ValueError:
            number = int(float(text))
    except (ValueError, OverflowError) as exc:
        raise ExpressionError(_CONVERSION, value=to_text(value)[:50], kind="int") from exc
    if number.bit_length() > MAX_INT_BITS:
        raise too_big()
    return number


def _to_float(value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    try:
        return float(to_text(value).strip())
    except ValueError as exc:
        raise ExpressionError(_CONVERSION, value=to_text(value)[:50], kind="float") from exc


def to_bool(value: Any) -> bool:
    """Truthiness as a workflow user expects: "false", "0", "no", "" and null are false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSY_TEXT
    return bool(value)


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "lower": lambda value: grown(to_text(value).lower(), to_text(value)),
    "upper": lambda value: grown(to_text(value).upper(), to_text(value)),
    "strip": lambda value: to_text(value).strip(),
    "len": _length,
    "startswith": lambda value, prefix: to_text(value).startswith(to_text(prefix)),
    "endswith": lambda value, suffix: to_text(value).endswith(to_text(suffix)),
    "contains": _contains,
    "matches": _matches,
    "int": _to_int,
    "float": _to_float,
    "str": to_text,
    "bool": to_bool,
    "abs": abs,
    "min": min,
    "max": max,
    "round": bounded_round,
}


# -- operators: numbers compare with numeric text, as LLM output is text --------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _coerced(compare: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def apply(left: Any, right: Any) -> Any:
        if isinstance(left, str) != isinstance(right, str):
            left_number, right_number = _number(left), _number(right)
            if left_number is not None and right_number is not None:
                return compare(left_number, right_number)
        return compare(left, right)

    return apply


# The bounded arithmetic of shared/workflow/bounded_eval.py, plus comparisons and `in`.
_OPERATORS: Final[dict[type[ast.AST], Callable[..., Any]]] = {
    **ARITHMETIC,
    ast.Eq: _coerced(operator.eq),
    ast.NotEq: _coerced(operator.ne),
    ast.Gt: _coerced(operator.gt),
    ast.Lt: _coerced(operator.lt),
    ast.GtE: _coerced(operator.ge),
    ast.LtE: _coerced(operator.le),
    ast.Not: operator.not_,
    ast.In: lambda item, container: _contains(container, item),
    ast.NotIn: lambda item, container: not _contains(container, item),
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}

_ALLOWED_NODES: Final = (
    ast.Expression,
    ast.BoolOp,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Subscript,
    ast.Slice,
    ast.IfExp,
    ast.And,
    ast.Or,
    *_OPERATORS,  # only the operators we implement; `~`, `<<`, `|` and friends are refused
)
_COMPREHENSIONS: Final = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_OTHER_CONSTRUCT = Message("不允许使用这种写法", "this construct is not allowed")


# -- compile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """A compiled condition; immutable and safe to share between threads."""

    source: str
    references: list[Reference]
    _placeholders: tuple[tuple[str, Reference], ...] = field(repr=False)
    _tree: ast.Expression = field(repr=False)

    def evaluate(self, resolve: Callable[[Reference], Any]) -> bool:
        """True or false for the values `resolve` gives; ExpressionError if evaluation fails."""
        names = dict(_LITERALS)
        names.update({name: resolve(reference) for name, reference in self._placeholders})
        budget = _regex_deadline.set(time.monotonic() + REGEX_BUDGET_S)
        try:
            result = evaluate(
                self._tree, self.source, operators=_OPERATORS, functions=FUNCTIONS, names=names
            )
        except Exception as exc:  # anything the user's data makes go wrong is the user's error
            raise failure(exc) from exc
        finally:
            _regex_deadline.reset(budget)
        return to_bool(result)


def _substitute_references(expression: str) -> tuple[str, dict[str, Reference]]:
    """Replace `{ref}` outside string literals by placeholder names; literals stay literal."""
    out: list[str] = []
    placeholders: dict[str, Reference] = {}
    by_dotted: dict[str, str] = {}
    position, quote = 0, ""
    while position < len(expression):
        char = expression[position]
        if quote:
            out.append(char)
            if char == "\\" and position + 1 < len(expression):
                out.append(expression[position + 1])
                position += 1
            elif char == quote:
                quote = ""
            position += 1
            continue
        if char in "'\"":
            quote = char
        elif char == "{" and (match := _SINGLE_REFERENCE.match(expression, position)):
            dotted = match.group(1)
            if dotted not in by_dotted:
                name = f"{_PLACEHOLDER_PREFIX}{len(by_dotted)}"
                by_dotted[dotted] = name
                placeholders[name] = Reference.parse(dotted)
            out.append(f" {by_dotted[dotted]} ")
            position = match.end()
            continue
        out.append(char)
        position += 1
    return "".join(out), placeholders


def _check_tree(tree: ast.Expression, placeholders: dict[str, Reference]) -> None:
    nodes = list(ast.walk(tree))
    # The well-known escapes first, so the message names them whatever surrounds them.
    for node in nodes:
        if isinstance(node, ast.Attribute):
            raise ExpressionError(_ATTRIBUTE, name=node.attr)
        if isinstance(node, ast.Lambda):
            raise ExpressionError(_NOT_ALLOWED, what="lambda")
        if isinstance(node, _COMPREHENSIONS):
            raise ExpressionError(_NOT_ALLOWED, what="comprehension")
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            construct = CONSTRUCTS.get(type(node))
            if construct is None:
                raise ExpressionError(_OTHER_CONSTRUCT)
            raise ExpressionError(_NOT_ALLOWED, what=construct)
        if isinstance(node, ast.Call):
            _check_call(node)
        elif isinstance(node, ast.Name) and id(node) not in called:
            _check_name(node.id, placeholders)
        elif isinstance(node, ast.Constant) and not isinstance(
            node.value, str | int | float | bool | type(None)
        ):
            raise ExpressionError(_CONSTANT, value=repr(node.value))


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError(_NOT_ALLOWED, what="calling an expression")
    name = node.func.id
    if name.startswith("_"):
        raise ExpressionError(_UNDERSCORE, name=name)
    check_function(name, node, FUNCTIONS)
    if any(isinstance(arg, ast.Starred) for arg in node.args):
        raise ExpressionError(_NOT_ALLOWED, what="*args")
    # A literal pattern is checked now, so a bad regex is reported when the workflow is saved.
    if name == "matches" and len(node.args) == 2:
        pattern = node.args[1]
        if isinstance(pattern, ast.Constant) and isinstance(pattern.value, str):
            compile_pattern(pattern.value)


def _check_name(name: str, placeholders: dict[str, Reference]) -> None:
    if name in placeholders or name in _LITERALS or name in ("True", "False", "None"):
        return
    if name.startswith("_"):
        raise ExpressionError(_UNDERSCORE, name=name)
    raise ExpressionError(_UNKNOWN_NAME, name=name)


@functools.lru_cache(maxsize=1024)
def compile_condition(expression: str) -> Condition:
    """Compile a condition; ExpressionError if it does not parse or uses a refused construct."""
    check_text(expression, MAX_EXPRESSION_LENGTH)
    source, placeholders = _substitute_references(expression)
    tree = parse(source, MAX_DEPTH)
    _check_tree(tree, placeholders)
    return Condition(
        source=expression,
        references=list(placeholders.values()),
        _placeholders=tuple(placeholders.items()),
        _tree=tree,
    )
