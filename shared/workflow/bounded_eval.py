"""The one bounded evaluator behind condition expressions and the agent's calculator tool.

Both check their text and parse it here (`check_text`, `parse`: bounded length and nesting),
check the syntax tree against their own whitelist (what each language allows, and calls by
`check_function`), then hand the tree to `evaluate` here: simpleeval walks it with the
operators and functions given, and this module supplies the arithmetic, whose every result
is bounded *before* it is built:

- integers: at most MAX_INT_BITS bits (about 3000 digits) out of `*` and `**`, exponents at
  most MAX_EXPONENT, `round` to at most MAX_EXPONENT digits (`round(1, -10**9)` would
  compute 10**(10**9) first);
- strings and lists: at most MAX_VALUE_SIZE characters (a list counts as its JSON text) out
  of `+`, `*`, `%` formatting (widths and precisions included: `'%0999999999d' % 1`) and
  list or tuple literals (which could hold the same large list a thousand times).

So every step is a small amount of work, and an evaluation's time is bounded by the size of
its tree. A step that fails says so in the user's words: the operator or function, the
operands shown with their kinds (text, number, object, ...), never Python's own message.
Attribute access, comprehensions, dicts, sets and f-strings are not evaluated at all,
whatever a caller's whitelist lets through.
"""

from __future__ import annotations

import ast
import math
import operator
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

from simpleeval import EvalWithCompoundTypes, OperatorNotDefined

from shared.i18n import LocalizedError, Message
from shared.workflow.value_sizes import FormatRefused, percent_format_size, value_size
from shared.workflow.value_words import describe_values, filled, kind_of

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
_NO_KEY = Message("{container} 中没有键 {key}", "{container} has no key {key}")
_NO_INDEX = Message(
    "下标 {index} 超出范围:{container} 只有 {length} 项",
    "index {index} is out of range: {container} has {length} items",
)
_NOT_A_VALUE = Message("函数不能当作值使用", "a function cannot be used as a value")
# What went wrong, in words, without Python's (`'>' not supported between instances of
# 'dict' and 'int'` names classes the user never wrote). Operands are shown with their kinds.
_COMPARE = Message(
    "无法比较 {left} {op} {right}:{op} 只能比较两个数字或两个文本",
    "cannot compare {left} {op} {right}: {op} compares two numbers or two texts",
)
_OPERATE = Message(
    "无法计算 {left} {op} {right}:{op} 不能用于这两种值",
    "cannot compute {left} {op} {right}: {op} does not apply to these kinds of values",
)
_OPERATE_ONE = Message(
    "无法计算 {op}{operand}:{op} 只能用于数字", "cannot compute {op}{operand}: {op} needs a number"
)
_CALL = Message("函数 {name}() 不能用于这些参数:{args}", "the function {name}() cannot take {args}")
_CALL_NOTHING = Message("函数 {name}() 需要参数", "the function {name}() needs arguments")
_INDEX = Message(
    "无法用 {key} 取 {container} 中的元素(列表用数字下标,对象用文本键)",
    "cannot take {key} out of {container} (lists take number indexes, objects text keys)",
)
# Hints for the operands that usually mean a reference read something else than intended.
_HINT_OBJECT = Message(
    "。整个对象不能这样比较或计算;要使用其中的字段,请用路径引用,例如 {input.字段名}",
    ". A whole object cannot be compared or computed with; to use one of its fields, "
    "reference it by its path, e.g. {input.field}",
)
_HINT_LIST = Message(
    "。整个列表不能这样比较或计算;要使用其中的一项,请用下标引用,例如 {input.items.0},"
    "或用 len() 取项数",
    ". A whole list cannot be compared or computed with; to use one item, reference it by "
    "its index, e.g. {input.items.0}, or count the items with len()",
)
_HINT_NULL = Message(
    "。null 表示引用的值不存在(字段缺失,或节点没有运行)",
    ". null means the reference found no value (a missing field, or a node that did not run)",
)
_FAILED = {
    TypeError: Message("值的类型不适合这个运算", "the values are of kinds this cannot use"),
    ValueError: Message("值无效", "a value is invalid"),
}
_CANNOT = Message("无法求值", "it cannot be evaluated")

# Refused constructs as the user wrote them, not as Python's syntax tree names them.
CONSTRUCTS: Final[dict[type[ast.AST], str]] = {
    ast.Dict: "{'key': value}",
    ast.Set: "{a, b}",
    ast.JoinedStr: "f'…'",
    ast.FormattedValue: "f'…'",
    ast.NamedExpr: ":=",
    ast.Store: ":=",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "*x",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.Invert: "~",
    ast.MatMult: "@",
    ast.ListComp: "[… for …]",
    ast.SetComp: "{… for …}",
    ast.DictComp: "{…: … for …}",
    ast.GeneratorExp: "(… for …)",
    ast.Lambda: "lambda",
}
_SYMBOLS: Final[dict[type[ast.AST], str]] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.USub: "-",
    ast.UAdd: "+",
    ast.Not: "not ",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Gt: ">",
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.LtE: "<=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}


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


# -- parsing -----------------------------------------------------------------------------

_EMPTY = Message("表达式为空", "the expression is empty")
_TEXT_TOO_LONG = Message(
    "表达式过长(最多 {limit} 个字符)", "expression too long (at most {limit} chars)"
)
_SYNTAX = Message("语法错误:{detail}", "syntax error: {detail}")
_TOO_DEEP = Message(
    "表达式嵌套过深(最多 {limit} 层)", "expression nested too deeply (at most {limit} levels)"
)
_UNKNOWN_FUNCTION = Message(
    "未知函数 {name}(可用:{available})", "unknown function {name} (available: {available})"
)
_KEYWORDS = Message("函数 {name} 不接受关键字参数", "function {name} takes no keyword arguments")


def check_text(expression: str, max_length: int) -> None:
    """Refuse an expression longer than `max_length` characters, or with nothing in it."""
    if len(expression) > max_length:
        raise ExpressionError(_TEXT_TOO_LONG, limit=max_length)
    if not expression.strip():
        raise ExpressionError(_EMPTY)


def parse(source: str, max_depth: int) -> ast.Expression:
    """The syntax tree of one expression; ExpressionError when `source` is not one, or nests
    deeper than `max_depth` (evaluation recurses: `1+1+…+1` must not reach Python's limit)."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(_SYNTAX, detail=exc.msg) from exc
    except (RecursionError, MemoryError) as exc:
        raise ExpressionError(_TOO_DEEP, limit=max_depth) from exc
    if _depth(tree.body) > max_depth:  # the levels written: not the `Expression` wrapper
        raise ExpressionError(_TOO_DEEP, limit=max_depth)
    return tree


def _depth(tree: ast.AST) -> int:
    """How deeply the tree nests, its root counted as 1, without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def check_function(name: str, call: ast.Call, functions: Mapping[str, Any]) -> None:
    """A call of `name` the whitelist allows: one of `functions`, with positional arguments."""
    if name not in functions:
        raise ExpressionError(_UNKNOWN_FUNCTION, name=name, available=", ".join(functions))
    if call.keywords:
        raise ExpressionError(_KEYWORDS, name=name)


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
            raise ExpressionError(_NOT_A_VALUE)

    # Each operation's failure is worded here, where the operator and its operands are known.
    # ExpressionError (a bound, a conversion) is a ValueError too and passes through as it is.

    def _eval_binop(self, node: ast.BinOp) -> Any:
        operation = self._operator(node.op)
        left, right = self._eval(node.left), self._eval(node.right)
        try:
            return operation(left, right)
        except ExpressionError:
            raise
        except TypeError:
            raise mismatch(_OPERATE, _SYMBOLS.get(type(node.op), "?"), left, right) from None

    def _eval_unaryop(self, node: ast.UnaryOp) -> Any:
        operation = self._operator(node.op)
        operand = self._eval(node.operand)
        try:
            return operation(operand)
        except ExpressionError:
            raise
        except TypeError:
            symbol = _SYMBOLS.get(type(node.op), "?")
            raise ExpressionError(
                filled(_OPERATE_ONE, op=symbol, operand=describe_values(operand))
            ) from None

    def _eval_compare(self, node: ast.Compare) -> Any:
        right = self._eval(node.left)
        result: Any = True
        for operation_node, comparator in zip(node.ops, node.comparators, strict=True):
            if not result:
                break
            left, right = right, self._eval(comparator)
            try:
                result = self._operator(operation_node)(left, right)
            except ExpressionError:
                raise
            except TypeError:
                symbol = _SYMBOLS.get(type(operation_node), "?")
                raise mismatch(_COMPARE, symbol, left, right) from None
        return result

    def _eval_call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.keywords:
            return super()._eval_call(node)  # refused by every caller's whitelist anyway
        name = node.func.id
        arguments = [self._eval(argument) for argument in node.args]
        function = self.functions.get(name)
        if function is None:
            return super()._eval_call(node)  # simpleeval's own "function not defined"
        try:
            return function(*arguments)
        except ExpressionError:
            raise
        except (TypeError, ValueError):  # wrong kinds or number of arguments, math domain
            if not arguments:
                raise ExpressionError(filled(_CALL_NOTHING, name=name)) from None
            raise ExpressionError(
                filled(_CALL, name=name, args=describe_values(*arguments))
            ) from None

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container, key = self._eval(node.value), self._eval(node.slice)
        try:
            return container[key]
        except KeyError:
            raise ExpressionError(
                filled(_NO_KEY, container=describe_values(container), key=describe_values(key))
            ) from None
        except IndexError:
            raise ExpressionError(
                filled(
                    _NO_INDEX,
                    index=describe_values(key),
                    container=describe_values(container),
                    length=len(container),
                )
            ) from None
        except (TypeError, ValueError):  # `5[0]`, `[1]['a']`, a slice step of 0
            shown_key = Message("切片", "a slice") if isinstance(key, slice) else None
            raise ExpressionError(
                filled(
                    _INDEX,
                    key=shown_key or describe_values(key),
                    container=describe_values(container),
                )
            ) from None

    def _operator(self, operator_node: ast.AST) -> Callable[..., Any]:
        try:
            found: Callable[..., Any] = self.operators[type(operator_node)]
        except KeyError:
            raise OperatorNotDefined(operator_node, self.expr) from None
        return found

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
    """The value of a checked tree. ExpressionError for a bound it would exceed and for an
    operation, function or index that cannot apply to its operands (worded with the values
    and their kinds); whatever else Python raises (ZeroDivisionError, OverflowError, ...) for
    the caller to word with `failure`."""
    return _Evaluator(operators, functions, names).eval(source, previously_parsed=tree.body)


def mismatch(message: Message, symbol: str, left: Any, right: Any) -> ExpressionError:
    """`left symbol right` cannot be done: both operands shown with their kinds, plus a hint
    when one of them is what a reference to the wrong thing gives (a whole object or list,
    or null)."""
    text = filled(message, op=symbol, left=describe_values(left), right=describe_values(right))
    kinds = {kind_of(left), kind_of(right)}
    hint = (
        _HINT_OBJECT
        if "object" in kinds
        else _HINT_LIST
        if "list" in kinds
        else _HINT_NULL
        if "null" in kinds
        else None
    )
    if hint is not None:
        text = Message(text.zh + hint.zh, text.en + hint.en)
    return ExpressionError(text)


def failure(exc: Exception) -> ExpressionError:
    """A plain-worded ExpressionError for what went wrong while evaluating. Never Python's
    own text: it names classes (`'dict'`, `NoneType`) and exceptions the user never wrote."""
    if isinstance(exc, ExpressionError):
        return exc
    if isinstance(exc, ZeroDivisionError):
        return ExpressionError(DIVISION_BY_ZERO)
    if isinstance(exc, OverflowError):
        return ExpressionError(OVERFLOW)
    for kind, message in _FAILED.items():
        if isinstance(exc, kind):
            return ExpressionError(message)
    return ExpressionError(_CANNOT)
