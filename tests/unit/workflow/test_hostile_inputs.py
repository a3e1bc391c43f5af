"""Inputs built to hurt, at the level of the workflow model: expressions that try to escape
the evaluator or to run forever, templates that recurse or amplify, graphs whose shape
makes checking them expensive, and JSON bodies Python's parser takes but nothing else can.
Each is refused or bounded with a clear error; the end-to-end suite is
tests/security/test_hostile_graphs.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from shared.web.json_body import MAX_JSON_DEPTH, JsonRefused, check_json_body
from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.issues import MAX_ISSUES
from shared.workflow.model import MAX_LOOP_NESTING, WorkflowGraph
from shared.workflow.templates import (
    MAX_RENDERED_CHARS,
    MAX_TEMPLATE_DEPTH,
    Reference,
    TemplateError,
    render,
    render_value,
)
from shared.workflow.validation import validate_workflow


def _evaluate(expression: str, values: dict[str, Any] | None = None) -> bool:
    known = values or {}
    return compile_condition(expression).evaluate(lambda ref: known.get(ref.dotted))


# -- expressions: escapes are refused when saved ---------------------------------------------

ESCAPES = [
    ("().__class__.__bases__[0].__subclasses__()", "attribute"),
    ("__import__('os').system('touch {marker}')", "attribute"),
    ("__import__('os')", "_"),
    ("__builtins__", "_"),
    ("[x for x in (1, 2)]", "comprehension"),
    ("{x: 1 for x in (1,)}", "comprehension"),
    ("(x for x in (1,))", "comprehension"),
    ("(lambda: 1)()", "lambda"),
    ("f'{().__class__}'", "attribute"),
    ("f'{1}'", "f'…'"),
    ("getattr({value}, '__class__')", "getattr"),
    ("{value}.__class__.__mro__", "attribute"),
    ("{value}['__class__']['__init__']", None),  # a key lookup in data: allowed, harmless
    ("range(10**9)", "range"),
    ("eval('1')", "eval"),
    ("open('/etc/passwd')", "open"),
    ("type('x', (), {})", "type"),
    ("len(*{value})", "*args"),
    ("int(x=1)", "keyword"),
    ("(x := 1)", ":="),
    ("{value} << 10**6", "<<"),
    ("~{value}", "~"),
    ("b'abc' == b'abc'", "literal"),
]


@pytest.mark.parametrize(("expression", "named"), ESCAPES)
def test_escapes_are_refused_when_compiled(
    expression: str, named: str | None, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    text = expression.replace("{marker}", str(marker))
    if named is None:
        # Subscripts read data only: a missing key is null, never an attribute.
        assert _evaluate(text, {"value": {"__class__": {"__init__": 0}}}) is False
        with pytest.raises(ExpressionError, match="cannot take"):
            _evaluate(text, {"value": "a string"})  # str indices, not attributes
    else:
        with pytest.raises(ExpressionError) as refused:
            compile_condition(text)
        assert named in refused.value.render("en")
    assert not marker.exists()


# -- expressions: what compiles is bounded when it runs -----------------------------------------

BOUNDED = [
    ("'a' * 10**9 == ''", "too long"),
    ("[1] * 10**9 == []", "too long"),
    ("10**10**10 > 1", "exponent"),
    ("9**9**9 > 1", "exponent"),
    ("2**-10**9 > 1", "exponent"),
    ("((10**1000)**1000)**1000 > 1", "too large"),
    ("{big} * {big} > 0", "too large"),
    ("round(1, -10**9) == 0", "round"),
    ("int('9' * 5000) > 1", "convert"),
    ("int(float('inf')) > 0", "convert"),
    ("'a' * 99999 + 'a' * 99999 == ''", "too long"),
    # Growers bounded before they build (issue 13): `%` widths and precisions, nested lists
    # (a list holding the same list many times is small in memory, huge as text or to
    # compare), list literals, `%s` of such lists, text functions that grow their input.
    ("'%099999999d' % 1 == ''", "too long"),
    ("'%.99999999f' % 1 == ''", "too long"),
    ("'%*d' % (10**8, 1) == ''", "too long"),
    ("'%-*.*f' % (5, 10**8, 1.5) == ''", "too long"),
    ("'%(a)099999999d' % {m} == ''", "too long"),
    ("'%s %s %s' % ({s}, {s}, {s}) == ''", "too long"),
    ("'%r' % {nl} == ''", "too long"),
    ("'%0999999999999999999999d' % 1 == ''", "too long"),
    ("'%d' % () == ''", "not enough arguments"),
    ("'%y' % 1 == ''", "unsupported format"),
    ("[{s}, {s}, {s}] == []", "too long"),
    ("({s}, {s}, {s}) == ()", "too long"),
    ("[{s}, {s}] + [{s}] == []", "too long"),
    ("upper({ss}) == ''", "too long"),
    ("int('9' * 4000) > 1", "too large"),
    ("(-8) ** 0.5 > 1", "not a real number"),
]


@pytest.mark.parametrize(("expression", "named"), BOUNDED)
def test_huge_values_fail_with_a_clear_error(expression: str, named: str) -> None:
    values = {"big": 10**3000, "s": "x" * 40_000, "ss": "ß" * 60_000, "nl": "\x00" * 30_000}
    values["m"] = {"a": 1}
    with pytest.raises(ExpressionError) as failed:
        _evaluate(expression, values)
    assert named in failed.value.render("en")


def test_bounds_leave_ordinary_arithmetic_alone() -> None:
    assert _evaluate("10**1000 > 10**999 and 2**-2 == 0.25 and round(1.26, 1) == 1.3")
    assert _evaluate("'ab' * 3 == 'ababab' and {n} * 2 == 84", {"n": 42})
    assert _evaluate("'%05d|%-4s|%.2f|%x|%%' % (42, 'ab', 3.14159, 255) == '00042|ab  |3.14|ff|%'")
    assert _evaluate(
        "'%(n)s!' % {m} == '42!' and '%s' % [1, 'a'] == \"[1, 'a']\"", {"m": {"n": 42}}
    )
    assert _evaluate("'%*d' % (5, 1) == '    1' and '%.*f' % (1, 2.25) == '2.2'")
    assert _evaluate("len('a' * 100_000) == 100_000 and len([0] * 30_000 + [1]) == 30_001")
    # A long text from the data stays usable: only values an expression grows are bounded.
    assert _evaluate(
        "contains(lower({t}), 'x') and len(upper({t})) == 200000", {"t": "X" * 200_000}
    )


@pytest.mark.parametrize(
    "expression",
    ["-" * 1998 + "1", "1" + "+1" * 999, "not " * 400 + "true", "(" * 250 + "1" + ")" * 250],
)
def test_deeply_nested_expressions_are_refused_when_compiled(expression: str) -> None:
    # Evaluation recurses: these would fail with RecursionError in the orchestrator.
    with pytest.raises(ExpressionError) as refused:
        compile_condition(expression)
    assert "nested" in refused.value.render("en") or "parenthes" in refused.value.render("en")


def test_a_backtracking_regex_times_out_instead_of_hanging() -> None:
    # `(a|aa)+$` on 40 a's and a "!" backtracks for minutes in `re`.
    condition = compile_condition("matches({text}, '(a|aa)+$') or matches({text}, '(a|aa)+$')")
    with pytest.raises(ExpressionError) as failed:
        condition.evaluate(lambda _: "a" * 40 + "!")
    assert "timed out" in failed.value.render("en")
    assert _evaluate("matches({t}, '^[^@]+@example[.]com$')", {"t": "x@example.com"})


_NESTED_REPEATS = "(?:(?:(?:a{100}){100}){100}){100}"
_COMPILE_ATTACK = f"""
from shared.workflow.expressions import ExpressionError, compile_condition
said = []
try:  # a literal pattern is compiled when the workflow is validated or saved
    compile_condition("matches({{x}}, '{_NESTED_REPEATS}')")
except ExpressionError as exc:
    said.append(exc.render("en"))
condition = compile_condition("matches({{x}}, {{input.pattern}})")
try:  # a pattern from run input is compiled in the orchestrator
    condition.evaluate(lambda ref: "{_NESTED_REPEATS}" if ref.root == "input" else "aaa")
except ExpressionError as exc:
    said.append(exc.render("en"))
print(said)
"""
# A list holding one list 99,999 times is small in memory but 30 GB as text, and 10**10
# comparisons against another such list: both held the orchestrator (issue 13).
_SHARED_LIST = "[[0] * 99999] * 99999"
_GROWER_ATTACK = f"""
from shared.workflow.expressions import ExpressionError, compile_condition
for expression in (
    "{_SHARED_LIST} == []",
    "len(str({_SHARED_LIST})) > 0",
    "{_SHARED_LIST} == {_SHARED_LIST}",
):
    try:
        compile_condition(expression).evaluate(lambda ref: None)
    except ExpressionError as exc:
        print(exc.render("en"))
"""


def _run_isolated(code: str) -> str:
    """Run `code` in a subprocess with a timeout: an attack that would hang or exhaust this
    process, if its fix regressed, fails the test instead of the suite."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[3],
        check=False,
    )
    return done.stdout + done.stderr


def test_a_regex_whose_compile_would_take_minutes_is_refused_before_compiling() -> None:
    # `regex.compile` of 10**8 nested copies held the GIL for minutes (issue 13).
    said = _run_isolated(_COMPILE_ATTACK)
    assert said.count("regular expression repeats too much") == 2, said


def test_a_list_of_shared_lists_is_refused_before_it_is_printed_or_compared() -> None:
    said = _run_isolated(_GROWER_ATTACK)
    assert said.count("result too long") == 3, said


def test_large_data_is_not_walked_again_at_every_step() -> None:
    # simpleeval looked through every container at every node: 30 references to a list of
    # 10**7 items took about a second each. Data is looked at once, where it is used.
    values = {"items": [[0] * 10_000] * 1_000}
    started = time.monotonic()
    assert _evaluate(" and ".join(["len({items}) == 1000"] * 30), values)
    assert time.monotonic() - started < 5.0  # generous: it takes milliseconds


def test_too_long_an_expression_is_refused() -> None:
    with pytest.raises(ExpressionError, match="too long"):
        compile_condition("1 == 1 and " * 300 + "true")


# -- templates: recursion and amplification ----------------------------------------------------


def _doubling(steps: int, seed: str) -> str:
    """What a chain of transforms `"{t-(n-1)}{t-(n-1)}"` computes, step by step."""
    value = seed
    for _ in range(steps):
        previous = value
        value = render("{prev}{prev}", lambda _: previous)  # noqa: B023 - used at once
    return value


def test_a_doubling_chain_stops_at_the_render_limit() -> None:
    with pytest.raises(TemplateError) as failed:
        _doubling(40, "x" * 1000)
    assert str(MAX_RENDERED_CHARS) in failed.value.render("en")


def test_shared_references_count_every_time_they_are_copied() -> None:
    # `{"a": "{prev}", "b": "{prev}"}` shares one object in memory, but every copy is stored.
    def step(previous: Any) -> Any:
        return render_value({"a": "{prev}", "b": "{prev}"}, lambda _: previous)

    value: Any = "x" * 1000
    for _ in range(9):  # 2**9 copies of 1000 characters: within the bound
        value = step(value)
    with pytest.raises(TemplateError):
        step(step(value))


def test_many_references_in_one_template_are_bounded() -> None:
    template = "{big}" * 5000
    with pytest.raises(TemplateError):
        render(template, lambda _: "y" * 1000)
    with pytest.raises(TemplateError):
        render_value({"items": ["{big}"] * 5000}, lambda _: ["y" * 100] * 10)


def test_a_rendered_value_holding_a_marker_is_not_expanded_again() -> None:
    values = {"input.text": "{input.secret}", "input.secret": "s3cr3t"}

    def resolve(reference: Reference) -> Any:
        return values.get(reference.dotted)

    assert render("said: {input.text}", resolve) == "said: {input.secret}"
    assert render_value("{input.text}", resolve) == "{input.secret}"
    assert render("{{input.secret}}", resolve) == "{input.secret}"


def test_a_deeply_nested_template_is_refused_clearly() -> None:
    nested: Any = "{value}"
    for _ in range(MAX_TEMPLATE_DEPTH + 5):
        nested = [nested]
    with pytest.raises(TemplateError, match="nested"):
        render_value(nested, lambda _: 1)


# -- graphs whose shape is the attack ---------------------------------------------------------


def _graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> WorkflowGraph:
    return WorkflowGraph.model_validate({"nodes": nodes, "edges": edges})


def _codes(graph: WorkflowGraph) -> set[str]:
    return {issue.code for issue in validate_workflow(graph, "en").errors}


def _nested_loops(levels: int) -> WorkflowGraph:
    nodes: list[dict[str, Any]] = [{"id": "s", "type": "start"}, {"id": "e", "type": "end"}]
    for level in range(levels):
        loop: dict[str, Any] = {"id": f"l{level}", "type": "loop", "data": {"items_path": "items"}}
        if level:
            loop["parentId"] = f"l{level - 1}"
        nodes.append(loop)
    edges = [{"id": "a", "source": "s", "target": "l0"}, {"id": "b", "source": "l0", "target": "e"}]
    return _graph(nodes, edges)


def test_loops_nest_at_most_the_documented_depth() -> None:
    assert "LOOPS_TOO_DEEP" not in _codes(_nested_loops(MAX_LOOP_NESTING + 1))
    assert _codes(_nested_loops(MAX_LOOP_NESTING + 2)) == {"LOOPS_TOO_DEEP"}
    # 1998 loops inside each other: resolving the nesting once used to be cubic (minutes).
    report = validate_workflow(_nested_loops(1998), "en")
    assert [issue.code for issue in report.errors] == ["LOOPS_TOO_DEEP"]
    assert "1997" in report.errors[0].message


def test_a_graph_of_cycles_is_checked_in_one_pass() -> None:
    # Every node in a cycle, every node referencing 50 others: the ancestry of a cyclic
    # scope was a search per node (quadratic); now one pass over its components.
    ids = [f"n{i}" for i in range(1998)]
    nodes = [{"id": "s", "type": "start"}, {"id": "e", "type": "end"}] + [
        {"id": i, "type": "transform", "data": {"template": "{n0} {n1} {n2}"}} for i in ids
    ]
    ring = [
        {"id": f"r{k}", "source": ids[k], "target": ids[(k + 1) % len(ids)]}
        for k in range(len(ids))
    ]
    report = validate_workflow(_graph(nodes, ring), "en")
    assert report.errors[0].code == "CYCLE"
    # Upstream of each other along the ring: no REFERENCE_NOT_UPSTREAM but the self ones.
    not_upstream = [i for i in report.errors if i.code == "REFERENCE_NOT_UPSTREAM"]
    assert {i.node_id for i in not_upstream} == {"n0", "n1", "n2"}


def test_a_flood_of_issues_is_capped() -> None:
    ids = [f"n{i}" for i in range(1998)]
    nodes = [{"id": "s", "type": "start"}, {"id": "e", "type": "end"}] + [
        {"id": i, "type": "transform", "data": {"template": "{nope-1} {nope-2}"}} for i in ids
    ]
    report = validate_workflow(_graph(nodes, []), "en")
    assert len(report.errors) == MAX_ISSUES + 1
    last = report.errors[-1]
    assert last.code == "TOO_MANY_ISSUES"
    assert str(2 * len(ids) - MAX_ISSUES) in last.message
    assert not report.valid


def test_self_references_and_mutual_references_are_refused() -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "s", "type": "start"},
        {"id": "t-1", "type": "transform", "data": {"template": "{t-1}{t-1}"}},
        {"id": "t-2", "type": "transform", "data": {"template": "{t-3}"}},
        {"id": "t-3", "type": "transform", "data": {"template": "{t-2}"}},
        {"id": "e", "type": "end"},
    ]
    edges = [
        {"id": "a", "source": "s", "target": "t-1"},
        {"id": "b", "source": "t-1", "target": "t-2"},
        {"id": "c", "source": "t-2", "target": "t-3"},
        {"id": "d", "source": "t-3", "target": "e"},
    ]
    report = validate_workflow(_graph(nodes, edges), "en")
    refused = {(i.code, i.node_id) for i in report.errors}
    assert ("REFERENCE_NOT_UPSTREAM", "t-1") in refused
    assert ("REFERENCE_NOT_UPSTREAM", "t-2") in refused


# -- JSON bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": [1e999]}', "Infinity"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"\\udfff": 1}', "surrogate"),
        (b'{"a": "\xff\xfe"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "deep"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "deep"),
        (b'{"a": ' + b"9" * 5000 + b"}", "number"),
    ],
)
def test_json_bodies_python_takes_but_nothing_else_can_are_refused(body: bytes, named: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        check_json_body(body)
    assert named in refused.value.text.en.format(**refused.value.params)


def test_sound_json_bodies_pass() -> None:
    check_json_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)
    check_json_body(json.dumps({"emoji": "\U0001f600", "x": 1.5e300}).encode())
    check_json_body(b'{"pair": "\\ud83d\\ude00"}')
    with pytest.raises(json.JSONDecodeError):  # the app reports syntax errors itself
        check_json_body(b'{"a": ')
