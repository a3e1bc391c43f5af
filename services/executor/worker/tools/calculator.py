"""The calculator tool: arithmetic on an expression the model writes, without eval.

The calculator is a second whitelist on the one bounded evaluator that condition expressions
use (shared/workflow/bounded_eval.py). The evaluator parses the expression within this tool's
bounds on length and nesting; this module checks the syntax tree against what the calculator
allows (numbers, + - * / // % **, unary signs, a few math functions, pi and e; no names,
attributes, strings or other calls) and words refusals in its terms; the evaluator then
computes it with the arithmetic conditions use, which bounds exponents, the bits of every
integer a product or power would make, and `round`'s digits, so every step is small and no
input can stall the worker.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from shared.i18n import Message
from shared.workflow.bounded_eval import (
    ARITHMETIC,
    CONSTRUCTS,
    MAX_INT_BITS,
    ExpressionError,
    bounded_round,
    check_function,
    check_text,
    evaluate,
    failure,
    parse,
    too_big,
)

MAX_EXPRESSION_LENGTH: Final = 1000
MAX_DEPTH: Final = 60

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
_NOT_FINITE = Message("结果不是有限数({value})", "the result is not a finite number ({value})")
_NOT_A_NUMBER = Message("结果不是实数", "the result is not a real number")

_OPERATORS: Final = ARITHMETIC
FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "abs": abs,
    "round": bounded_round,
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
    # As the model wrote it, not as Python's syntax tree names it (`Dict`, `BitOr`).
    what = _WHAT.get(type(node)) or CONSTRUCTS.get(type(node), "?")
    return ExpressionError(_NOT_ALLOWED, what=what, functions=", ".join(FUNCTIONS))


def _check_tree(tree: ast.Expression) -> None:
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
            check_function(node.func.id, node, FUNCTIONS)
        elif isinstance(node, ast.Name) and id(node) not in called and node.id not in CONSTANTS:
            raise ExpressionError(_UNKNOWN_NAME, name=node.id)
        elif isinstance(node, ast.Constant) and (
            isinstance(node.value, bool) or not isinstance(node.value, int | float)
        ):
            raise ExpressionError(_TEXT, value=repr(node.value)[:50])


def calculate(expression: str) -> int | float:
    """The value of `expression`; ExpressionError (bilingual) for anything refused or failing.
    CPU-bound but bounded (every step is small): callers on an event loop run it in a thread."""
    check_text(expression, MAX_EXPRESSION_LENGTH)
    tree = parse(expression, MAX_DEPTH)
    _check_tree(tree)
    try:
        result = evaluate(
            tree, expression, operators=_OPERATORS, functions=FUNCTIONS, names=CONSTANTS
        )
    except Exception as exc:  # the model's expression going wrong is the model's error
        # Worded by the evaluator (`sqrt()` of -1 names the function and the argument),
        # never Python's text.
        raise failure(exc) from exc
    if isinstance(result, bool) or not isinstance(result, int | float):
        raise ExpressionError(_NOT_A_NUMBER)
    if isinstance(result, int) and result.bit_length() > MAX_INT_BITS + 64:
        raise too_big()
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
