"""The one bounded evaluator behind condition expressions and the agent's calculator tool.

Both parse their text, check the syntax tree against their own whitelist, then hand the tree
to `evaluate` here: simpleeval walks it with the operators and functions given, and this
module supplies the arithmetic, whose every result is bounded *before* it is built:

- integers: at most MAX_INT_BITS bits (about 3000 digits) out of `*` and `**`, exponents at
  most MAX_EXPONENT, `round` to at most MAX_EXPONENT digits (`round(1, -10**9)` would
  compute 10**(10**9) first);
- strings and lists: at most MAX_VALUE_SIZE characters (a list counts as its JSON text) out
  of `+`, `*`, `%` formatting (widths and precisions included: `'%0999999999d' % 1`) and
  list or tuple literals (which could hold the same large list a thousand times).

So every step is a small amount of work, and an evaluation's time is bounded by the size of
its tree. Attribute access, comprehensions, dicts, sets and f-strings are not evaluated at
all, whatever a caller's whitelist lets through.
"""

from __future__ import annotations

import ast
import math
import operator
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

from simpleeval import EvalWithCompoundTypes

from shared.i18n import LocalizedError, Message
from shared.workflow.value_sizes import FormatRefused, percent_format_size, value_size

MAX_EXPONENT: Final = 1000
# Integers up to about 3000 digits: `(10**1000)**1000` would otherwise hold a core for hours.
MAX_INT_BITS: Final = 10_000
# Strings and lists an expression builds: characters (a list's or object's as JSON text).
MAX_VALUE_SIZE: Final = 100_000
DIGITS: Final = int(MAX_INT_BITS * math.log10(2))


class ExpressionError(LocalizedError, ValueError):
    """An expression that does not compile, or failed while evaluating; localized."""


_EXPONENT = Message("指数过大(最多 {limit})", "exponent too large (at most {limit})")
_TOO_BIG = Message(
    "结果过大(整数最多约 {digits} 位)", "result too large (integers up to about {digits} digits)"
)
_TOO_LONG = Message(
    "结果过长(文本和列表最多 {limit} 个字符)",
    "result too long (texts and lists at most {limit} characters)",
)
_FORMAT = Message("% 格式无效:{detail}", "invalid % format: {detail}")
_ROUND_DIGITS = Message(
    "round 的位数过大(最多 {limit})", "round to too many digits (at most {limit})"
)
_NOT_REAL = Message("结果不是实数", "the result is not a real number")
DIVISION_BY_ZERO = Message("除数为零", "division by zero")
OVERFLOW = Message("结果超出浮点数范围", "result out of floating-point range")
_EVALUATION = Message("求值失败:{detail}", "evaluation failed: {detail}")
_NO_KEY = Message("没有键 {key}", "no such key: {key}")
_NO_INDEX = Message("下标超出范围", "index out of range")


def too_big() -> ExpressionError:
    return ExpressionError(_TOO_BIG, digits=DIGITS)


def check_size(size: int) -> None:
    """Refuse a string or list of `size` characters (as `value_size` counts them)."""
    if size > MAX_VALUE_SIZE:
        raise ExpressionError(_TOO_LONG, limit=MAX_VALUE_SIZE)


def check_int(value: int) -> int:
    if value.bit_length() > MAX_INT_BITS + 64:  # sums of bounded integers grow a few bits
        raise too_big()
    return value


def grown(result: str, source: str) -> str:
    """A text function's result (upper() of 'ß' is 'SS'): refused if it outgrew both the
    limit and the text it came from."""
    if len(result) > MAX_VALUE_SIZE and len(result) > len(source):
        check_size(len(result))
    return result


# -- operators ---------------------------------------------------------------------------

_SEQUENCES: Final = (str, list, tuple)


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
        check_size(value_size(left, MAX_VALUE_SIZE) + value_size(right, MAX_VALUE_SIZE))
    return left + right


def _repeat(sequence: Any, count: int) -> Any:
    if count > 0 and len(sequence) > 0:
        size = value_size(sequence, MAX_VALUE_SIZE)
        check_size(size * count if size <= MAX_VALUE_SIZE else size)
    return sequence * count


def _multiply(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise too_big()
    elif isinstance(left, _SEQUENCES) and isinstance(right, int):
        return _repeat(left, right)
    elif isinstance(right, _SEQUENCES) and isinstance(left, int):
        return _repeat(right, left)
    return left * right


def _modulo(left: Any, right: Any) -> Any:
    if not isinstance(left, str):
        return left % right
    try:  # `%` formatting: its size, widths and precisions included, before it is built
        size = percent_format_size(left, right, MAX_VALUE_SIZE)
    except FormatRefused as exc:
        raise ExpressionError(_FORMAT, detail=str(exc)) from None
    check_size(size)
    result = left % right
    check_size(len(result))  # the estimate is an upper bound; this never fires
    return result


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, int | float) and abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(_EXPONENT, limit=MAX_EXPONENT)
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and (base.bit_length() - 1) * exponent > MAX_INT_BITS
    ):
        raise too_big()
    result = base**exponent
    if isinstance(result, complex):  # (-8) ** 0.5
        raise ExpressionError(_NOT_REAL)
    return result


ARITHMETIC: Final[Mapping[type[ast.AST], Callable[..., Any]]] = {
    ast.Add: _add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _modulo,
    ast.Pow: _power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def bounded_round(value: Any, digits: Any = None) -> Any:
    """round(), refusing more than MAX_EXPONENT digits either way."""
    if isinstance(digits, int) and abs(digits) > MAX_EXPONENT:
        raise ExpressionError(_ROUND_DIGITS, limit=MAX_EXPONENT)
    return round(value) if digits is None else round(value, digits)


# -- evaluation --------------------------------------------------------------------------

# What simpleeval can evaluate beyond a caller's whitelist, removed so that neither caller
# can reach it by mistake: attributes, dicts, sets, comprehensions, f-strings, assignments.
_NEVER: Final = (
    ast.Attribute,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.Assign,
    ast.AugAssign,
    ast.Import,
    ast.Starred,
)


class _Evaluator(EvalWithCompoundTypes):  # type: ignore[misc]
    """simpleeval, with literals' sizes bounded and only the functions it is given."""

    def __init__(
        self,
        operators: Mapping[type[ast.AST], Callable[..., Any]],
        functions: Mapping[str, Callable[..., Any]],
        names: Mapping[str, Any],
    ) -> None:
        super().__init__(operators=dict(operators), functions=dict(functions), names=dict(names))
        self.functions = dict(functions)  # not the list/tuple/dict/set simpleeval adds
        for kind in _NEVER:
            self.nodes.pop(kind, None)

    def _check_disallowed_items(self, item: Any) -> None:
        # simpleeval walks every container result at every node, looking for functions or
        # modules inside: O(size) per node, so `{big} == {big} and ...` or a list holding one
        # list many times costs size × nodes. Values here are data (references' JSON, the
        # literals, what our functions return) and functions are never values (bare names
        # are refused), so one look at the value itself is enough.
        if isinstance(item, types.ModuleType) or callable(item):
            raise ExpressionError(_EVALUATION, detail="functions are not values")

    def _eval_list(self, node: ast.List) -> list[Any]:
        result = [self._eval(item) for item in node.elts]
        check_size(value_size(result, MAX_VALUE_SIZE))
        return result

    def _eval_tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        result = tuple(self._eval(item) for item in node.elts)
        check_size(value_size(result, MAX_VALUE_SIZE))
        return result


def evaluate(
    tree: ast.Expression,
    source: str,
    *,
    operators: Mapping[type[ast.AST], Callable[..., Any]],
    functions: Mapping[str, Callable[..., Any]],
    names: Mapping[str, Any],
) -> Any:
    """The value of a checked tree. ExpressionError for a bound it would exceed; whatever
    else Python raises (TypeError, ZeroDivisionError, ...) for the caller to word."""
    return _Evaluator(operators, functions, names).eval(source, previously_parsed=tree.body)


def failure(exc: Exception) -> ExpressionError:
    """A plain-worded ExpressionError for what went wrong while evaluating (no Python names)."""
    if isinstance(exc, ExpressionError):
        return exc
    if isinstance(exc, ZeroDivisionError):
        return ExpressionError(DIVISION_BY_ZERO)
    if isinstance(exc, OverflowError):
        return ExpressionError(OVERFLOW)
    if isinstance(exc, KeyError):
        return ExpressionError(_NO_KEY, key=str(exc.args[0] if exc.args else "")[:50])
    if isinstance(exc, IndexError):
        return ExpressionError(_NO_INDEX)
    return ExpressionError(_EVALUATION, detail=str(exc)[:200] or "?")
