"""The Execution aggregate: idempotent results, final states, and a round trip through the store."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.executor.domain import Execution, ExecutionFinishedError
from services.executor.settings import ExecutorSettings
from shared.eventstore import EventSourcedApplication

GRAPH: dict[str, Any] = {
    "nodes": [
        {"id": "start-1", "type": "start"},
        {"id": "llm-1", "type": "llm"},
        {"id": "loop-1", "type": "loop"},
        {"id": "body", "type": "llm", "parentId": "loop-1"},
        {"id": "end-1", "type": "end"},
    ],
    "edges": [],
}


def new_execution() -> Execution:
    return Execution(uuid.uuid4(), uuid.uuid4(), 3, "wf", GRAPH, {"text": "你好"})


def test_a_run_from_pending_to_completed() -> None:
    execution = new_execution()
    assert (execution.status, execution.progress) == ("pending", 0)
    assert execution.record_node_started("start-1", "start-1", "start", 1, {})
    assert execution.status == "running"
    assert execution.current_node == "start-1"
    assert execution.record_node_completed("start-1", 1, {"text": "你好"}, 3)
    assert execution.progress == 25  # one of four top-level nodes; loop bodies do not count
    assert execution.record_node_skipped("llm-1", "llm-1", "llm", "branch not taken")
    assert execution.finish({"answer": 42})
    assert (execution.status, execution.progress, execution.output_data) == (
        "completed",
        100,
        {"answer": 42},
    )


def test_results_applied_twice_change_nothing() -> None:
    execution = new_execution()
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {"prompt": "p"})
    assert execution.record_node_completed("llm-1", 1, {"text": "a"}, 10)
    version = execution.version
    assert not execution.record_node_completed("llm-1", 1, {"text": "b"}, 10)  # redelivered
    assert not execution.record_node_started("llm-1", "llm-1", "llm", 1, {"prompt": "p"})
    assert execution.version == version
    assert execution.nodes["llm-1"]["output"] == {"text": "a"}


def test_a_retried_attempt_ignores_late_results_of_the_old_one() -> None:
    execution = new_execution()
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    assert execution.record_node_failed("llm-1", 1, "HTTP 503", 50, final=False)
    assert execution.nodes["llm-1"]["status"] == "retrying"
    assert execution.record_node_started("llm-1", "llm-1", "llm", 2, {})
    assert not execution.record_node_completed("llm-1", 1, {"text": "late"}, 10)
    assert execution.record_node_completed("llm-1", 2, {"text": "ok"}, 10)
    assert (execution.nodes["llm-1"]["attempt"], execution.nodes["llm-1"]["output"]) == (
        2,
        {"text": "ok"},
    )


def test_a_finished_execution_accepts_nothing_more() -> None:
    execution = new_execution()
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    assert execution.fail("provider not configured", "llm-1")
    assert execution.error == {"message": "provider not configured", "node_id": "llm-1"}
    assert not execution.record_node_completed("llm-1", 1, {}, 1)
    assert not execution.finish({})
    assert not execution.cancel("someone")
    with pytest.raises(ExecutionFinishedError):
        execution.record_node_started("end-1", "end-1", "end", 1, {})


def test_an_execution_round_trips_through_the_store(store: dict[str, str], monkeypatch) -> None:
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    app = EventSourcedApplication(ExecutorSettings(environment="test", jwt_secret="x" * 40))
    try:
        execution = new_execution()
        execution.record_node_started("start-1", "start-1", "start", 1, {})
        execution.record_node_completed("start-1", 1, {"text": "你好"}, 2, branch=None)
        execution.record_log("info", "节点开始执行", "start-1", "start", 2)
        app.save(execution)
        loaded: Execution = app.repository.get(execution.id)
        assert loaded.nodes == execution.nodes
        assert (loaded.status, loaded.log_count, loaded.input_data) == (
            "running",
            1,
            {"text": "你好"},
        )
        kinds = [type(e).__qualname__ for e in app.events.get(execution.id)]
        assert kinds == [
            "Execution.Created",
            "Execution.Started",
            "Execution.NodeStarted",
            "Execution.NodeCompleted",
            "Execution.LogRecorded",
        ]
    finally:
        app.close()


def test_resume_keeps_completed_work_and_retries_the_failure() -> None:
    execution = new_execution()
    execution.record_node_started("start-1", "start-1", "start", 1, {})
    execution.record_node_completed("start-1", 1, {"text": "你好"}, 3)
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    execution.record_node_failed("llm-1", 1, "HTTP 500", 40, final=True)
    execution.record_node_skipped("end-1", "end-1", "end", "upstream failed")
    execution.fail("llm-1 failed", "llm-1")
    assert not new_execution().resume("x")  # only a failed run can be resumed
    assert execution.resume("alice")
    assert (execution.status, execution.error) == ("running", None)
    assert execution.nodes["start-1"]["status"] == "completed"
    assert execution.nodes["llm-1"]["status"] == "retrying"
    assert "end-1" not in execution.nodes  # decided again
    assert execution.record_node_started("llm-1", "llm-1", "llm", 2, {})
    assert execution.record_node_completed("llm-1", 2, {"text": "ok"}, 10)
