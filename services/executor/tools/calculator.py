"""The calculator tool: arithmetic on an expression the model writes, without eval.

The approach of `shared.workflow.expressions`: parse, check the syntax tree against a
whitelist (numbers, + - * / // % **, unary signs, a few math functions, pi and e; no names,
attributes, strings or other calls), then let simpleeval walk it with our own operators.
Sizes are bounded: the expression's length and nesting, the exponent, and the bits of any
integer a multiplication or power would make, so no input can stall the worker.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict
from simpleeval import SimpleEval

from shared.i18n import Message
from shared.workflow.expressions import MAX_EXPONENT, ExpressionError

MAX_EXPRESSION_LENGTH: Final = 1000
MAX_DEPTH: Final = 60
# About 3000 decimal digits: far below Python's int-to-text limit, plenty for arithmetic.
MAX_INT_BITS: Final = 10_000

DESCRIPTION: Final = (
    "Evaluate an arithmetic expression and return the number. Supports numbers, + - * / "
    "// % ** and parentheses, the functions abs, round, min, max, sqrt, floor, ceil, log "
    "(log(x) natural, log(x, base)), exp, sin, cos, tan (radians) and the constants pi and e. "
    "Example: sqrt(2) * (3 + 4) ** 2"
)
PARAMETERS: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "expression": {
            "type": "string",
            "description": "The expression, e.g. (1 + 2) * 3 / 4",
            "maxLength": MAX_EXPRESSION_LENGTH,
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}


class CalculatorArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expression: str


_EMPTY = Message("表达式为空", "the expression is empty")
_TOO_LONG = Message(
    "表达式过长(最多 {limit} 个字符)", "expression too long (at most {limit} chars)"
)
_TOO_DEEP = Message(
    "表达式嵌套过深(最多 {limit} 层)", "expression nested too deeply (at most {limit} levels)"
)
_SYNTAX = Message("语法错误:{detail}", "syntax error: {detail}")
_NOT_ALLOWED = Message(
    "计算器不支持 {what}(只支持数字、+ - * / // % **、括号和 {functions})",
    "{what} is not supported by the calculator (only numbers, + - * / // % **, "
    "parentheses and {functions})",
)
_ATTRIBUTE = Message(
    "计算器不允许访问属性 .{name}", "attribute access .{name} is not allowed in the calculator"
)
_TEXT = Message(
    "计算器只计算数字,不支持文本或其他字面量 {value}",
    "the calculator works on numbers only, not {value}",
)
_UNKNOWN_NAME = Message(
    "未知名称 {name}(可用常量:pi、e)", "unknown name {name} (available constants: pi, e)"
)
_UNKNOWN_FUNCTION = Message(
    "未知函数 {name}(可用:{available})", "unknown function {name} (available: {available})"
)
_KEYWORDS = Message("函数 {name} 不接受关键字参数", "function {name} takes no keyword arguments")
_EXPONENT = Message("指数过大(最多 {limit})", "exponent too large (at most {limit})")
_TOO_LARGE = Message(
    "结果过大(整数最多约 {digits} 位)", "result too large (integers up to about {digits} digits)"
)
_OVERFLOW = Message("结果超出浮点数范围", "result out of floating-point range")
_NOT_FINITE = Message("结果不是有限数({value})", "the result is not a finite number ({value})")
_NOT_REAL = Message("结果不是实数", "the result is not a real number")
_DIVISION_BY_ZERO = Message("除数为零", "division by zero")
_VALUE = Message(
    "数值无效:{detail}(例如负数开平方、log(0))",
    "invalid value: {detail} (e.g. the square root of a negative number, log(0))",
)
_EVALUATION = Message("计算失败:{detail}", "evaluation failed: {detail}")

_DIGITS: Final = int(MAX_INT_BITS * math.log10(2))


def _too_large() -> ExpressionError:
    return ExpressionError(_TOO_LARGE, digits=_DIGITS)


def _multiply(left: Any, right: Any) -> Any:
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1
    ):
        raise _too_large()
    return left * right


def _power(base: Any, exponent: Any) -> Any:
    if abs(exponent) > MAX_EXPONENT:
        raise ExpressionError(_EXPONENT, limit=MAX_EXPONENT)
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and (base.bit_length() - 1) * exponent > MAX_INT_BITS
    ):
        raise _too_large()
    result = base**exponent
    if isinstance(result, complex):
        raise ExpressionError(_NOT_REAL)
    return result


_OPERATORS: Final[dict[type[ast.AST], Callable[..., Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _multiply,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "floor": math.floor,
    "ceil": math.ceil,
    "log": math.log,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
}
CONSTANTS: Final[dict[str, float]] = {"pi": math.pi, "e": math.e}
_ALLOWED_NODES: Final = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    *_OPERATORS,
)
_WHAT: Final[dict[type[ast.AST], str]] = {
    ast.Subscript: "[]",
    ast.Compare: "== < >",
    ast.BoolOp: "and/or",
    ast.Lambda: "lambda",
    ast.IfExp: "if/else",
    ast.Tuple: "(a, b)",
    ast.List: "[a, b]",
    ast.Starred: "*args",
}


def _refuse(node: ast.AST) -> ExpressionError:
    if isinstance(node, ast.Attribute):
        return ExpressionError(_ATTRIBUTE, name=node.attr)
    what = _WHAT.get(type(node), type(node).__name__)
    return ExpressionError(_NOT_ALLOWED, what=what, functions=", ".join(FUNCTIONS))


def _check_depth(tree: ast.AST) -> None:
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExpressionError(_TOO_DEEP, limit=MAX_DEPTH)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _check_tree(tree: ast.Expression) -> None:
    _check_depth(tree)
    nodes = list(ast.walk(tree))
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    for node in nodes:
        if not isinstance(node, _ALLOWED_NODES):
            raise _refuse(node)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                raise _refuse(node.func)
            if not isinstance(node.func, ast.Name):
                raise ExpressionError(
                    _NOT_ALLOWED, what="calling an expression", functions=", ".join(FUNCTIONS)
                )
            if node.func.id not in FUNCTIONS:
                raise ExpressionError(
                    _UNKNOWN_FUNCTION, name=node.func.id, available=", ".join(FUNCTIONS)
                )
            if node.keywords:
                raise ExpressionError(_KEYWORDS, name=node.func.id)
        elif isinstance(node, ast.Name) and id(node) not in called and node.id not in CONSTANTS:
            raise ExpressionError(_UNKNOWN_NAME, name=node.id)
        elif isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise ExpressionError(_TEXT, value=repr(node.value)[:50])


def _parse(expression: str) -> ast.Expression:
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(_TOO_LONG, limit=MAX_EXPRESSION_LENGTH)
    if not expression.strip():
        raise ExpressionError(_EMPTY)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(_SYNTAX, detail=exc.msg) from exc
    except (RecursionError, MemoryError) as exc:
        raise ExpressionError(_TOO_DEEP, limit=MAX_DEPTH) from exc
    _check_tree(tree)
    return tree


def calculate(expression: str) -> int | float:
    """The value of `expression`; ExpressionError (bilingual) for anything refused or failing."""
    tree = _parse(expression)
    evaluator = SimpleEval(
        operators=dict(_OPERATORS), functions=dict(FUNCTIONS), names=dict(CONSTANTS)
    )
    try:
        result = evaluator.eval(expression, previously_parsed=tree.body)
    except ExpressionError:
        raise
    except ZeroDivisionError as exc:
        raise ExpressionError(_DIVISION_BY_ZERO) from exc
    except OverflowError as exc:
        raise ExpressionError(_OVERFLOW) from exc
    except ValueError as exc:
        raise ExpressionError(_VALUE, detail=str(exc)) from exc
    except Exception as exc:  # the model's expression going wrong is the model's error
        raise ExpressionError(_EVALUATION, detail=f"{type(exc).__name__}: {exc}") from exc
    if isinstance(result, bool) or not isinstance(result, int | float):
        raise ExpressionError(_NOT_REAL)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS + 64:
        raise _too_large()
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpressionError(_NOT_FINITE, value=repr(result))
    return result


def format_number(value: int | float) -> str:
    """Integers exactly; floats with 15 significant digits (`0.1 + 0.2` is `0.3`, `5.0` is `5`)."""
    if isinstance(value, int):
        return str(value)
    if value == 0:
        return "0"
    return format(value, ".15g")
