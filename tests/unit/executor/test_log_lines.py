"""An execution's log lines, read back from its events on each store: a node's "started" and
"finished" lines are its node events (nothing extra stored), and runs recorded before that,
which stored those lines, read exactly as they did."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.settings import ExecutorSettings

GRAPH = {"nodes": [{"id": "llm-1", "type": "llm"}], "edges": []}


@pytest.fixture
def app(service_env: None) -> Iterator[ExecutorApplication]:
    application = ExecutorApplication(ExecutorSettings(environment="test", jwt_secret="x" * 40))
    yield application
    application.close()


def lines_of(app: ExecutorApplication, execution: Execution) -> list[tuple[str, str | None, str]]:
    return [(line.level, line.node_id, line.message) for line in app.logs(execution.id)]


def test_a_node_says_it_started_and_finished_after_what_its_result_said(
    app: ExecutorApplication,
) -> None:
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {})
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    app.save(execution)
    execution.record_node_completed("llm-1", 1, {"text": "hi"}, 12, log_line=True)
    execution.record_log("info", "用量:30 tokens", "llm-1", "llm")  # the result's own line
    execution.record_log("warn", "执行已被 ann 取消")
    app.save(execution)

    assert lines_of(app, execution) == [
        ("info", "llm-1", "节点开始执行"),
        ("info", "llm-1", "用量:30 tokens"),
        ("info", "llm-1", "节点执行完成"),
        ("warn", None, "执行已被 ann 取消"),
    ]
    logs = app.logs(execution.id)
    assert logs[2].duration_ms == 12
    assert len({line.id for line in logs}) == len(logs)
    assert [line.timestamp for line in logs] == sorted(line.timestamp for line in logs)
    stored = [type(e).__qualname__ for e in app.events.get(execution.id)]
    assert stored.count("Execution.LogRecorded") == 2  # only the lines that are not node events


def test_a_retried_node_says_it_started_once(app: ExecutorApplication) -> None:
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {})
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    execution.record_node_failed("llm-1", 1, "timeout", 5, final=False)
    execution.record_node_started("llm-1", "llm-1", "llm", 2, {})
    app.save(execution)
    assert [message for _, _, message in lines_of(app, execution)] == ["节点开始执行"]


def test_a_run_recorded_before_node_events_were_log_lines_reads_as_it_did(
    app: ExecutorApplication,
) -> None:
    # What the executor stored then: node events without the mark, each followed by its line.
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", GRAPH, {})
    execution._started()
    execution._node_started("llm-1", "llm-1", "llm", 1, {})
    execution.record_log("info", "节点开始执行", "llm-1", "llm")
    execution._node_completed("llm-1", 1, {"text": "hi"}, 12, None)
    execution.record_log("info", "节点执行完成", "llm-1", "llm", 12)
    app.save(execution)

    assert lines_of(app, execution) == [
        ("info", "llm-1", "节点开始执行"),
        ("info", "llm-1", "节点执行完成"),
    ]


def test_a_run_writes_one_line_to_the_process_log_when_it_ends(
    app: ExecutorApplication, caplog: pytest.LogCaptureFixture
) -> None:
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 4, "w", GRAPH, {})
    app.save(execution)
    caplog.set_level("INFO", logger="agentflow.executor.runs")

    app.change(execution.id, lambda e: e.record_node_started("llm-1", "llm-1", "llm", 1, {}))
    app.change(execution.id, lambda e: e.finish({"answer": 42}))
    app.change(execution.id, lambda e: e.cancel("ann"))  # already over: changes nothing

    lines = [r.getMessage() for r in caplog.records if r.name == "agentflow.executor.runs"]
    assert len(lines) == 1
    assert f"execution {execution.id} completed: workflow {execution.workflow_id} v4" in lines[0]
