"""Workflow graphs built to hurt, end to end through the gateway (issue 8, "Bad input"): cycles,
self-loops, 10,000 nodes, loops nested deep, templates that recurse or amplify, huge strings,
bodies Python's JSON parser takes but nothing else can, and expressions that try to escape the
evaluator. Each is refused with the error shape and a clear `error_code`, or, where the graph
is valid, its run fails with a clear reason within a bounded time; nothing runs code, no
response is a 5xx, and the platform keeps serving another user's runs afterwards.

The unit-level cases (every escape, every bound) are tests/unit/workflow/test_hostile_inputs.py.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.workflow.templates import MAX_RENDERED_CHARS
from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import BRANCHING, E, W, create_workflow, edge, node
from tests.support.figures import Figures, scale
from tests.support.stack import Stack

SUITE = "security: hostile graphs"
RUN_TIMEOUT_S = 90.0  # a safety net on a loaded machine; a hang fails the test


def _backend(stack: Stack) -> str:
    return "postgres" if "postgres" in str(stack.env.get("AGENTFLOW_STORE")) else "sqlite"


@pytest.fixture(scope="module")
def totals(stack: Stack, figures: Figures) -> Iterator[Counter[str]]:
    """The cases of every test of this module on one backend, whatever ran and in whatever
    order, recorded as figures when the module is done with that backend."""
    counts: Counter[str] = Counter()
    yield counts
    backend = _backend(stack)
    figures.record(SUITE, f"hostile cases tried ({backend})", counts["tried"])
    figures.record(SUITE, f"refused with a clear error ({backend})", counts["refused"])
    figures.record(SUITE, f"bounded runs, failed clearly ({backend})", counts["bounded"])
    figures.record(SUITE, f"answered normally ({backend})", counts["answered"])
    figures.record(
        SUITE, f"crashes (5xx) / hangs ({backend})", f"{counts['5xx']} / {counts['hangs']}"
    )


@pytest.fixture
def tally(totals: Counter[str]) -> Iterator[Counter[str]]:
    """This test's cases (tried, refused, bounded, answered, 5xx, hangs), added to the totals."""
    counts: Counter[str] = Counter()
    try:
        yield counts
    finally:
        totals.update(counts)


@pytest.fixture
def me(stack: Stack, tally: Counter[str]) -> Iterator[httpx.Client]:
    """A new user's client; any 5xx it is answered fails the test at that request."""

    def no_5xx(response: httpx.Response) -> None:
        if response.status_code >= 500:
            tally["5xx"] += 1
            response.read()
            raise AssertionError(
                f"{response.request.method} {response.request.url.path} answered "
                f"{response.status_code}: {response.text[:2000]}"
            )

    client, _ = stack.user_client()
    client.event_hooks = {"request": [], "response": [no_5xx]}
    with client:
        yield client


def _refused(
    tally: Counter[str], response: httpx.Response, status: int, code: str
) -> dict[str, Any]:
    tally["tried"] += 1
    body = assert_error(response, status, code)
    tally["refused"] += 1
    return body


def _codes(issues: list[dict[str, Any]]) -> set[str]:
    return {issue["code"] for issue in issues}


def _graph(*nodes: dict[str, Any], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "hostile", "nodes": list(nodes), "edges": edges}


def _chain(*ids: str) -> list[dict[str, Any]]:
    return [edge(a, b) for a, b in itertools.pairwise(ids)]


def _nested_loops(levels: int) -> dict[str, Any]:
    loops = [node(f"l{i}", "loop", items_path="{input.items}") for i in range(levels)]
    for inner, outer in zip(loops[1:], loops, strict=False):
        inner["parentId"] = outer["id"]
    return _graph(node("s", "start"), *loops, node("e", "end"), edges=_chain("s", "l0", "e"))


def _start_run(client: httpx.Client, body: dict[str, Any], input_data: dict[str, Any]) -> str:
    wid = create_workflow(client, body)
    started = client.post(f"{W}/{wid}/execute", json={"input_data": input_data})
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def _finished(tally: Counter[str], client: httpx.Client, execution_id: str) -> dict[str, Any]:
    """The finished record; a run still going after RUN_TIMEOUT_S counts as a hang."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = client.get(f"{E}/{execution_id}/status").json()["status"]
        if status in ("completed", "failed", "cancelled"):
            record: dict[str, Any] = client.get(f"{E}/{execution_id}").json()
            return record
        time.sleep(0.2)
    tally["hangs"] += 1
    raise AssertionError(f"execution {execution_id} still {status} after {RUN_TIMEOUT_S} s")


def _bounded_failure(
    tally: Counter[str], client: httpx.Client, execution_id: str, node_id: str, says: str
) -> str:
    """The run failed at `node_id` (or, given "", at some node) with a reason containing
    `says` (either language)."""
    tally["tried"] += 1
    record = _finished(tally, client, execution_id)
    assert record["status"] == "failed", record
    failed = [n for n, run in record["nodes"].items() if run["status"] == "failed"]
    assert failed == [node_id or failed[0]], record["nodes"]
    error = str(record["nodes"][failed[0]]["error"])
    assert says in error, error
    assert "internal" not in error.lower(), error
    assert "内部" not in error, error
    tally["bounded"] += 1
    return error


# -- graphs refused before they run --------------------------------------------------------


def _refused_graphs(marker: Path) -> list[tuple[dict[str, Any], str]]:
    s, e = node("s", "start"), node("e", "end")
    big_label = "标" * scale(300_000, 1_000_000)  # 3 MB: as much as a workflow may hold
    return [
        (_graph(s, node("a", "transform", template="x"), node("b", "transform", template="y"), e,
                edges=[*_chain("s", "a", "b", "e"), edge("b", "a")]), "CYCLE"),
        (_graph(s, node("a", "transform", template="x"), e,
                edges=[*_chain("s", "a", "e"), edge("a", "a")]), "SELF_LOOP"),
        (_graph(s, node("t-1", "transform", template="{t-1}{t-1}"), e,
                edges=_chain("s", "t-1", "e")), "REFERENCE_NOT_UPSTREAM"),
        (_graph(s, node("t-2", "transform", template="{t-3}"),
                node("t-3", "transform", template="{t-2}"), e,
                edges=_chain("s", "t-2", "t-3", "e")), "REFERENCE_NOT_UPSTREAM"),
        (_nested_loops(12), "LOOPS_TOO_DEEP"),
        (_nested_loops(scale(200, 1998)), "LOOPS_TOO_DEEP"),
        (_graph(s, node("c", "condition", expression=f"__import__('os').system('touch {marker}')"),
                e, edges=_chain("s", "c", "e")), "INVALID_EXPRESSION"),
        (_graph(s, node("c", "condition", expression="1 == 1 and " * 10_000 + "true"), e,
                edges=_chain("s", "c", "e")), "INVALID_EXPRESSION"),
        (_graph(s, node("t", "transform", label=big_label, template="x"), e,
                edges=_chain("s", "t", "e")), "INVALID_NODE_CONFIG"),
    ]  # fmt: skip


def test_graphs_built_to_hurt_are_refused_before_they_run(
    me: httpx.Client, tally: Counter[str], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    for body, code in _refused_graphs(marker):
        report = me.post(f"{W}/validate", json=body)
        assert report.status_code == 200, report.text
        assert report.json()["valid"] is False
        assert code in _codes(report.json()["errors"])
        # Drafts may be saved in any state; running one is what is refused.
        wid = create_workflow(me, body)
        refused = _refused(tally, me.post(f"{W}/{wid}/execute", json={}), 422, "INVALID_WORKFLOW")
        assert code in _codes(refused["errors"])
        assert len(refused["errors"]) <= 501  # a flood of issues is capped
    assert not marker.exists()


def test_graphs_over_the_size_limits_are_refused_whole(
    me: httpx.Client, tally: Counter[str]
) -> None:
    nodes = [node("s", "start"), node("e", "end")]
    nodes += [node(f"n{i}", "transform", template="x") for i in range(10_000)]
    too_many_nodes = {"name": "huge", "nodes": nodes, "edges": []}
    few = [node("s", "start"), node("a", "transform", template="x"), node("e", "end")]
    too_many_edges = {
        "name": "dense",
        "nodes": few,
        "edges": [{"id": f"x{i}", "source": "s", "target": "a"} for i in range(10_001)],
    }
    # Within the counts but over the bytes a workflow may hold (3 MiB): 413 on every write.
    heavy = {**BRANCHING, "description": "", "nodes": [*BRANCHING["nodes"]]}
    heavy["nodes"][2] = node("t-1", "transform", template="{input.text}!", note="标" * 1_100_000)
    before = len(me.get(W).json())
    _refused(tally, me.post(W, json=heavy), 413, "WORKFLOW_TOO_LARGE")
    for body in (too_many_nodes, too_many_edges):
        for response in (me.post(W, json=body), me.post(f"{W}/validate", json=body)):
            refused = _refused(tally, response, 422, "VALIDATION_ERROR")
            assert "2000" in refused["detail"] or "10000" in refused["detail"]
    wid = create_workflow(me, BRANCHING)
    _refused(tally, me.put(f"{W}/{wid}", json={"nodes": nodes}), 422, "VALIDATION_ERROR")
    _refused(tally, me.put(f"{W}/{wid}", json={"nodes": heavy["nodes"]}), 413, "WORKFLOW_TOO_LARGE")
    exported = {"format_version": 1, "name": "imported", "nodes": nodes, "edges": []}
    _refused(tally, me.post(f"{W}/import", json={"workflow": exported}), 422, "IMPORT_MALFORMED")
    exported = {**heavy, "format_version": 1}
    _refused(tally, me.post(f"{W}/import", json={"workflow": exported}), 413, "WORKFLOW_TOO_LARGE")
    # input_data goes into the run's first event too: at most 1 MiB.
    big_input = {"input_data": {"text": "x" * (1024 * 1024)}}
    _refused(tally, me.post(f"{W}/{wid}/execute", json=big_input), 413, "INPUT_TOO_LARGE")
    assert me.get(E, params={"workflow_id": wid}).json() == []
    assert len(me.get(W).json()) == before + 1  # nothing of the refused ones was stored
    assert me.get(f"{W}/{wid}").json()["nodes"] == BRANCHING["nodes"]


# -- bodies that break parsers -------------------------------------------------------------


def _raw_bodies() -> list[tuple[str, bytes]]:
    def workflow(label: bytes) -> bytes:
        return b'{"name": "x", "nodes": [{"id": "s", "type": "start", "data": {"label": %s}}]}' % (
            label
        )

    return [
        ("invalid UTF-8", workflow(b'"ab\xff\xfe"')),
        ("lone surrogate", workflow(b'"a\\ud800b"')),
        ("NaN", workflow(b"NaN")),
        ("Infinity", b'{"name": "x", "nodes": [{"id": "s", "type": "start", '
                      b'"position": {"x": Infinity, "y": -Infinity}}]}'),
        ("1e999", workflow(b"1e999")),
        ("9 x 5000", workflow(b"9" * 5000)),
        ("nested 100", workflow(b"[" * 100 + b"]" * 100)),
        ("nested 100k", workflow(b"[" * 100_000 + b"]" * 100_000)),
    ]  # fmt: skip


def test_bodies_that_break_parsers_answer_400_and_store_nothing(
    stack: Stack, me: httpx.Client, tally: Counter[str]
) -> None:
    wid = create_workflow(me, BRANCHING)
    before = len(me.get(W).json())
    json_type = {"Content-Type": "application/json"}
    for _, body in _raw_bodies():
        for path in (W, f"{W}/validate", f"{W}/{wid}/execute"):
            if path.endswith("execute"):
                body = b'{"input_data": {"text": ' + body + b"}}"
            _refused(tally, me.post(path, content=body, headers=json_type), 400, "INVALID_JSON")
        _refused(tally, me.put(f"{W}/{wid}", content=body, headers=json_type), 400, "INVALID_JSON")
    english = me.post(W, content=b'{"a": NaN}', headers={**json_type, "Accept-Language": "en"})
    assert "NaN" in _refused(tally, english, 400, "INVALID_JSON")["detail"]
    # The gateway's body limit comes first.
    huge = b'{"name": "' + b"x" * (11 * 1024 * 1024) + b'"}'
    _refused(tally, me.post(W, content=huge, headers=json_type), 413, "PAYLOAD_TOO_LARGE")
    assert len(me.get(W).json()) == before
    assert me.get(f"{E}", params={"workflow_id": wid}).json() == []

    # Query strings: percent-encoded bytes that are not UTF-8, and a lone surrogate.
    for query in ("%ff%fe", "%ED%A0%80", "%00"):
        tally["tried"] += 1
        listed = me.get(f"{W}?search={query}")
        assert listed.status_code in (200, 422), listed.text
        tally["refused" if listed.status_code == 422 else "answered"] += 1
    # Raw non-UTF-8 bytes in the request line: the HTTP server answers 400 itself.
    host, port = stack.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(b"GET /api/v1/workflows?search=\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = raw.recv(200)
    tally["tried"] += 1
    assert answer.startswith(b"HTTP/1.1 400"), answer
    tally["refused"] += 1


# -- expressions that try to escape, or to run forever --------------------------------------


COMPILE_REFUSED = [
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "[x for x in (1, 2)]",
    "(lambda: 1)()",
    "f'{().__class__}'",
    "getattr({input}, '__class__')",
    "{input}.__class__.__mro__",
    "__builtins__",
    "range(10**9)",
    "(x := 1)",
    "matches({input}, '(?:(?:(?:a{100}){100}){100}){100}')",  # compiling it took minutes
]
RUN_BOUNDED = [
    ("'a' * 10**9 == ''", "100000"),
    ("'%099999999d' % 1 == ''", "100000"),
    ("{input.s} * 10**6 == ''", "100000"),
    ("10**10**10 > 1", "1000"),
    ("9**9**9 > 1", "1000"),
    ("((10**1000)**1000)**1000 > 1", "3010"),
    ("round(1, -10**9) == 0", "round"),
    ("matches({input.s}, '(a|aa)+$')", "matches"),
    ("len({input.s}) > 0 and int('9' * 5000) > 1", "int"),
]


def _condition(expression: str) -> dict[str, Any]:
    return _graph(
        node("s", "start"),
        node("c", "condition", expression=expression),
        node("yes", "output", value="yes"),
        node("no", "output", value="no"),
        node("e", "end"),
        edges=[edge("s", "c"), edge("c", "yes", "true"), edge("c", "no", "false"),
               edge("yes", "e"), edge("no", "e")],
    )  # fmt: skip


def test_expressions_that_try_to_escape_are_refused_and_run_nothing(
    stack: Stack, me: httpx.Client, tally: Counter[str], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    for expression in COMPILE_REFUSED:
        body = _condition(expression.replace("{marker}", str(marker)))
        report = me.post(f"{W}/validate", json=body).json()
        assert _codes(report["errors"]) == {"INVALID_EXPRESSION"}, (expression, report)
        wid = create_workflow(me, body)
        refused = _refused(tally, me.post(f"{W}/{wid}/execute", json={}), 422, "INVALID_WORKFLOW")
        assert refused["errors"][0]["node_id"] == "c"
    # What compiles is bounded when it runs: all at once, each fails within the timeout.
    hostile = {"s": "a" * 40 + "!"}
    runs = [(_start_run(me, _condition(e), hostile), says) for e, says in RUN_BOUNDED]
    for execution_id, says in runs:
        _bounded_failure(tally, me, execution_id, "c", says)
    assert not marker.exists()
    assert stack.executor.running
    assert stack.workflows.running


# -- templates that recurse or amplify -------------------------------------------------------


def test_templates_that_recurse_or_amplify_are_bounded(
    me: httpx.Client, tally: Counter[str]
) -> None:
    steps = scale(24, 40)  # 1000 characters doubled 24 times would be 16 GB
    ids = [f"t{i}" for i in range(steps)]
    doubling = _graph(
        node("s", "start"),
        node(ids[0], "transform", template="{input.s}{input.s}"),
        *(node(b, "transform", template=f"{{{a}}}{{{a}}}") for a, b in itertools.pairwise(ids)),
        node("e", "end"),
        edges=_chain("s", *ids, "e"),
    )  # fmt: skip
    shared = _graph(
        node("s", "start"),
        node(ids[0], "transform", mode="mapping", mapping={"a": "{input.s}", "b": "{input.s}"}),
        *(node(b, "transform", mode="mapping", mapping={"a": f"{{{a}}}", "b": f"{{{a}}}"})
          for a, b in itertools.pairwise(ids)),
        node("e", "end"),
        edges=_chain("s", *ids, "e"),
    )  # fmt: skip
    looped = _graph(
        node("s", "start"),
        node("lp", "loop", items_path="{input.items}", output="{input.s}" * 4),
        node("e", "end"),
        edges=_chain("s", "lp", "e"),
    )
    # A model node's inputs travel through NATS (1 MiB): too large, it fails, not hangs.
    model = _graph(
        node("s", "start"),
        node("ask", "llm", provider="deepseek", model="deepseek-chat", prompt="{input.s}"),
        node("e", "end"),
        edges=_chain("s", "ask", "e"),
    )
    small, large = {"s": "x" * 1000}, {"s": "x" * 600_000, "items": [1, 2]}
    limit = str(MAX_RENDERED_CHARS)
    runs = [
        (_start_run(me, doubling, small), "", limit),
        (_start_run(me, shared, small), "", limit),
        (_start_run(me, looped, large), "lp", limit),
        # input_data and the start node's output: 1.2 MB for the worker.
        (_start_run(me, model, {"s": "x" * 600_000}), "ask", "1000000"),
    ]
    for execution_id, node_id, says in runs:
        _bounded_failure(tally, me, execution_id, node_id, says)

    # A value that holds a template marker is text: it is not expanded again.
    echo = _graph(
        node("s", "start"),
        node("t", "transform", template="said: {input.text}"),
        node("e", "end"),
        edges=_chain("s", "t", "e"),
    )
    execution_id = _start_run(me, echo, {"text": "{input.secret}", "secret": "s3cr3t"})
    record = _finished(tally, me, execution_id)
    assert record["status"] == "completed", record
    assert record["output_data"] == {"result": "said: {input.secret}"}


# -- afterwards ------------------------------------------------------------------------------


def test_the_platform_keeps_serving_other_users(stack: Stack, tally: Counter[str]) -> None:
    other, _ = stack.user_client()
    with other:
        assert other.get("/healthz").status_code == 200
        runs = [_start_run(other, BRANCHING, {"text": f"hello {i}"}) for i in range(scale(3, 20))]
        for execution_id in runs:
            record = _finished(tally, other, execution_id)
            assert record["status"] == "completed", record
            assert record["output_data"]["shout"].startswith("hello")
    for service in (stack.gateway, stack.auth, stack.workflows, stack.executor):
        assert service.running, service.logs()[-2000:]
        # The shared error handler logs this for every 500 it answers.
        assert "unhandled error" not in service.logs(), service.logs()[-4000:]
