"""Regular expressions for `matches()`: Python's syntax, with bounded compile and search time.

Searching: the `regex` package (same syntax as `re`) takes a timeout, so a backtracking
pattern such as `(a|aa)+$` stops instead of holding the process for minutes.

Compiling: `regex` builds one node per copy of every counted repeat, and its compile time
grows faster than that count as repeats nest: `(?:(?:(?:a{100}){100}){100}){100}` (10**8
copies) held the GIL for minutes, before any search timeout applies, when a workflow was
saved and again in the orchestrator. So before compiling, the pattern is parsed with the
standard library's own parser (fast: it never expands repeats) and its *cost* is computed:
the number of nodes the expansion would have, where a repeat counts its body once per copy
and twice over (nesting is what makes `regex` superlinear). A pattern costing more than
MAX_REGEX_COST is refused. Measured on the development machine, the costliest shapes under
the limit compile in about 30 ms; see tests/unit/workflow/test_regex_limits.py.

Why not RE2 (`google-re2`): it would remove backtracking altogether, but it changes the
documented Python syntax: `\\w`, `\\d` and `\\b` are ASCII-only (Chinese text stops matching
`\\w+`), and lookarounds and backreferences are refused, so saved workflows would change
meaning. A compile in a separate process with a deadline would cost a process start per new
pattern (patterns may come from run input) and still need this bound to be cheap.
"""

from __future__ import annotations

import functools
import importlib
import re
from typing import Any, Final

import regex

from shared.i18n import Message
from shared.workflow.bounded_eval import ExpressionError

MAX_REGEX_LENGTH: Final = 200
# Nodes after expansion, as `pattern_cost` counts them: the costliest shapes under this
# compile in about 30 ms; 10**8 (four nested {100}) took minutes.
MAX_REGEX_COST: Final = 20_000

# The standard library's parser of `re` syntax (re._parser since 3.11, formerly sre_parse).
_parser: Any = importlib.import_module("re._parser")
_constants: Any = importlib.import_module("re._constants")
_GROUP_COST: Final = 5
_REPEATS: Final = frozenset(
    {_constants.MAX_REPEAT, _constants.MIN_REPEAT, _constants.POSSESSIVE_REPEAT}
)


_TOO_LONG = Message(
    "正则表达式过长(最多 {limit} 个字符)", "regular expression too long (at most {limit} chars)"
)
_TOO_COSTLY = Message(
    "正则表达式的重复次数过多(展开后约 {cost} 个节点,最多 {limit};请减少 {{n}} 重复或嵌套)",
    "regular expression repeats too much (about {cost} nodes once expanded, at most {limit}; "
    "use fewer {{n}} repeats or less nesting)",
)
_INVALID = Message("正则表达式无效:{detail}", "invalid regular expression: {detail}")


def _cost(items: Any, limit: int) -> int:
    """Nodes of the parsed pattern once repeats are expanded, each nested repeat doubling
    what is inside it; counting stops once past `limit`."""
    total = 0
    for op, argument in items:
        if op in _REPEATS:
            low, high, body = argument
            copies = low + 1 if high == _constants.MAXREPEAT else high
            total += 1 + 2 * max(copies, 1) * _cost(body, limit)
        elif op is _constants.SUBPATTERN:  # a capturing group costs `regex` several nodes
            total += (1 if argument[0] is None else _GROUP_COST) + _cost(argument[3], limit)
        elif op is _constants.BRANCH:
            total += 1 + sum(_cost(branch, limit) for branch in argument[1])
        elif op in (_constants.ASSERT, _constants.ASSERT_NOT):
            total += 1 + _cost(argument[1], limit)
        elif op is _constants.ATOMIC_GROUP:
            total += 1 + _cost(argument, limit)
        elif op is _constants.GROUPREF_EXISTS:
            _, yes, no = argument
            total += 1 + _cost(yes, limit) + (_cost(no, limit) if no else 0)
        elif op is _constants.IN:
            total += 1 + len(argument)
        else:
            total += 1
        if total > limit:
            return total
    return total


def pattern_cost(pattern: str, limit: int = MAX_REGEX_COST) -> int:
    """The compile cost of `pattern` (a number over `limit` means over it); ExpressionError when
    it is not valid `re` syntax."""
    try:
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ExpressionError(_INVALID, detail=str(exc)) from exc
    return _cost(parsed, limit)


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """The compiled pattern (a `regex` Pattern, which takes a timeout when searching), after
    the length and cost checks; ExpressionError when refused. Cached: the same condition runs
    for every loop item."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ExpressionError(_TOO_LONG, limit=MAX_REGEX_LENGTH)
    cost = pattern_cost(pattern)
    if cost > MAX_REGEX_COST:
        raise ExpressionError(_TOO_COSTLY, cost=cost, limit=MAX_REGEX_COST)
    try:
        re.compile(pattern)  # Python's syntax is the documented one; `regex` adds a timeout
        return regex.compile(pattern)
    except (re.error, regex.error, RecursionError, OverflowError) as exc:
        raise ExpressionError(_INVALID, detail=str(exc)) from exc
