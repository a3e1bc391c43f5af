"""Loop nodes, run by the real decisions and the built-in runners in one process."""

from __future__ import annotations

from typing import Any

import pytest

from services.executor.local_engine import drive, run_builtin_command, run_locally
from services.executor.messages import NodeRunCommand, NodeRunResult


def node(node_id: str, node_type: str, data: dict[str, Any] | None = None, **extra: Any) -> Any:
    return {"id": node_id, "type": node_type, "position": {"x": 0, "y": 0},
            "data": data or {}, **extra}  # fmt: skip


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    return {"id": f"{source}->{target}", "source": source, "target": target,
            "sourceHandle": handle}  # fmt: skip


def loop_graph(loop: dict[str, Any], body: list[Any], body_edges: list[Any]) -> dict[str, Any]:
    return {
        "nodes": [node("start-1", "start"), node("loop-1", "loop", loop), *body,
                  node("end-1", "end")],
        "edges": [edge("start-1", "loop-1"), edge("loop-1", "end-1"), *body_edges],
    }  # fmt: skip


# `length(@)` fails on a number: the iteration of a number fails, the others succeed.
MEASURE = node(
    "measure", "transform",
    {"mode": "jmespath", "source": "{item}", "expression": "length(@)"},
    parentId="loop-1",
)  # fmt: skip
SHOUT = node("shout", "transform", {"template": "{value}!"}, parentId="loop-1")


def test_a_loop_runs_its_body_per_item_and_keeps_item_order() -> None:
    graph = loop_graph(
        {"items_path": "{input.words}", "parallelism": 3},
        [MEASURE, SHOUT],
        [edge("measure", "shout")],
    )
    execution = run_locally(graph, {"words": ["a", "bb", "ccc", "dddd"]})
    assert execution.status == "completed"
    record = execution.nodes["loop-1"]["output"]
    assert record == {"results": ["1!", "2!", "3!", "4!"], "errors": [], "count": 4}
    assert execution.nodes["shout[2]"]["output"] == "3!"
    assert execution.output_data == record  # the record of the node before the end


def test_a_loop_output_template_sees_the_item_the_index_and_body_nodes() -> None:
    graph = loop_graph(
        {"items_path": "input.words", "item_variable": "word",
         "output": {"word": "{word}", "at": "{index}", "size": "{measure}"}},
        [MEASURE | {"data": {**MEASURE["data"], "source": "{word}"}}],
        [],
    )  # fmt: skip
    execution = run_locally(graph, {"words": ["hi", "there"]})
    assert execution.nodes["loop-1"]["output"]["results"] == [
        {"word": "hi", "at": 0, "size": 2},
        {"word": "there", "at": 1, "size": 5},
    ]


@pytest.mark.parametrize(
    ("handling", "status", "results", "errors"),
    [
        ("continue", "completed", [2, 3], [1]),
        ("collect", "completed", [2, "index 1", 3], [1]),
        ("stop", "failed", None, None),
    ],
)
def test_a_failing_item_under_each_error_handling(
    handling: str, status: str, results: list[Any] | None, errors: list[int] | None
) -> None:
    graph = loop_graph({"items_path": "{input.items}", "error_handling": handling}, [MEASURE], [])
    execution = run_locally(graph, {"items": ["ab", 5, "cde"]})
    assert execution.status == status
    if status == "failed":
        assert execution.error is not None
        assert "iteration 1 failed" in execution.error["message"]
        assert "measure[2]" not in execution.nodes  # stop: no further item started
        return
    record = execution.nodes["loop-1"]["output"]
    assert [e["index"] for e in record["errors"]] == errors
    assert "length()" in record["errors"][0]["message"]
    shaped = [
        f"index {r['error']['index']}" if isinstance(r, dict) and "error" in r else r
        for r in record["results"]
    ]
    assert shaped == results


def test_a_stopped_loop_follows_its_error_policy() -> None:
    loop = {"items_path": "{input.items}", "on_error": "continue", "default_output": []}
    execution = run_locally(loop_graph(loop, [MEASURE], []), {"items": [5]})
    assert execution.status == "completed"
    assert execution.nodes["loop-1"]["output"] == []


def test_items_that_are_not_a_list_or_too_many_fail_the_loop_clearly() -> None:
    graph = loop_graph({"items_path": "{input.items}"}, [MEASURE], [])
    execution = run_locally(graph, {"items": "abc"})
    assert execution.status == "failed"
    assert "is not a list (it is text)" in execution.nodes["loop-1"]["error"]
    execution = run_locally(graph, {"items": {"a": 1}})
    assert "is not a list (it is object)" in execution.nodes["loop-1"]["error"]  # not "dict"
    graph = loop_graph({"items_path": "{input.items}", "max_iterations": 2}, [MEASURE], [])
    execution = run_locally(graph, {"items": ["a", "b", "c"]})
    assert "3 items exceed max_iterations 2" in execution.nodes["loop-1"]["error"]


def test_an_empty_list_and_an_empty_body() -> None:
    graph = loop_graph({"items_path": "{input.items}"}, [MEASURE], [])
    assert run_locally(graph, {"items": []}).nodes["loop-1"]["output"]["results"] == []
    graph = loop_graph({"items_path": "{input.items}"}, [], [])
    assert run_locally(graph, {"items": [1, 2]}).nodes["loop-1"]["output"]["results"] == [1, 2]


def test_a_condition_inside_the_body_takes_a_branch_per_item() -> None:
    body = [
        node("big", "condition", {"expression": "{item} > 10"}, parentId="loop-1"),
        node("yes", "transform", {"template": "big {item}"}, parentId="loop-1"),
        node("no", "transform", {"template": "small {item}"}, parentId="loop-1"),
    ]
    edges = [edge("big", "yes", "true"), edge("big", "no", "false")]
    graph = loop_graph({"items_path": "{input.n}"}, body, edges)
    execution = run_locally(graph, {"n": [5, 50]})
    assert execution.nodes["loop-1"]["output"]["results"] == ["small 5", "big 50"]
    assert execution.nodes["yes[0]"]["status"] == "skipped"
    assert execution.nodes["no[1]"]["status"] == "skipped"


def test_nested_loops_see_both_items() -> None:
    graph = {
        "nodes": [
            node("start-1", "start"),
            node("rows", "loop", {"items_path": "{input.rows}", "item_variable": "row"}),
            node("cells", "loop", {"items_path": "{row}", "item_variable": "cell"},
                 parentId="rows"),
            node("label", "transform", {"template": "{rows.index}.{index}={cell}"},
                 parentId="cells"),
            node("end-1", "end"),
        ],
        "edges": [edge("start-1", "rows"), edge("rows", "end-1")],
    }  # fmt: skip
    execution = run_locally(graph, {"rows": [["a", "b"], ["c"]]})
    assert execution.status == "completed"
    assert execution.nodes["rows"]["output"]["results"] == [["0.0=a", "0.1=b"], ["1.0=c"]]
    assert execution.nodes["label[1][0]"]["output"] == "1.0=c"


def test_a_large_loop_finishes_with_every_item() -> None:
    graph = loop_graph({"items_path": "{input.n}", "parallelism": 8}, [SHOUT], [])
    execution = run_locally(graph, {"n": list(range(300))})
    assert execution.nodes["loop-1"]["output"]["results"] == [f"{i}!" for i in range(300)]


def test_resuming_a_stopped_loop_reruns_only_the_failed_item() -> None:
    calls: list[tuple[str, int]] = []

    def flaky(command: NodeRunCommand) -> NodeRunResult:
        calls.append((command.run_key, command.attempt))
        if command.run_key == "shout[1]" and command.attempt == 1:
            return NodeRunResult(execution_id=command.execution_id, run_key=command.run_key,
                                 attempt=1, ok=False, error="provider down")  # fmt: skip
        return run_builtin_command(command)

    graph = loop_graph({"items_path": "{input.n}"}, [SHOUT], [])
    execution = run_locally(graph, {"n": [1, 2, 3]}, flaky)
    assert execution.status == "failed"
    assert execution.resume("user")
    resumed = drive(execution, flaky, recover=True)
    assert resumed.status == "completed"
    assert execution.nodes["loop-1"]["output"]["results"] == ["1!", "2!", "3!"]
    body_calls = [call for call in calls if call[0].startswith("shout")]
    assert body_calls == [("shout[0]", 1), ("shout[1]", 1), ("shout[1]", 2), ("shout[2]", 1)]
    assert calls.count(("start-1", 1)) == 1
