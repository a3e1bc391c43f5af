"""The live-update socket builds its statuses and final message from the execution's events,
without reading the execution again: after every save (one burst of events) what it says is
what `GET /api/v1/executions/{id}` says at that moment. It reads again only when the events
cannot tell: one went missing, or an output too large to travel with its event.

The events are a real `Execution` aggregate's, translated and wrapped as the executor
publishes them; the socket code is the gateway's own (`services/gateway/live.py`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from services.executor import integration
from services.executor.domain import Execution
from services.executor.integration import to_integration_event
from services.gateway import live
from services.gateway.execution_view import ExecutionView
from shared.bus.envelope import EventEnvelope


def _node(node_id: str, node_type: str, parent: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": node_id, "type": node_type, "data": {}}
    if parent is not None:
        found["parentId"] = parent
    return found


# Six top-level nodes (progress counts them) and one node inside the loop's body.
GRAPH = {
    "nodes": [
        _node("start-1", "start"),
        _node("cond-1", "condition"),
        _node("other-1", "transform"),
        _node("loop-1", "loop"),
        _node("body-1", "transform", parent="loop-1"),
        _node("llm-1", "llm"),
        _node("end-1", "end"),
    ],
    "edges": [],
}


def _record(execution: Execution) -> dict[str, Any]:
    """The execution as `GET /api/v1/executions/{id}` answers it (the fields the socket reads)."""
    record = {
        "status": execution.status,
        "progress": execution.progress,
        "current_node": execution.current_node,
        "nodes": execution.nodes,
        "output_data": execution.output_data,
        "error": execution.error,
        "execution_time": execution.execution_time_ms,
        "created_at": execution.created_on.isoformat(),
        "updated_at": execution.modified_on.isoformat(),
    }
    answered: dict[str, Any] = json.loads(json.dumps(record))
    return answered


def _status(execution: Execution) -> dict[str, Any]:
    return {
        "status": execution.status,
        "progress": execution.progress,
        "current_node": execution.current_node,
    }


def _final(execution: Execution) -> dict[str, Any]:
    return {
        "type": execution.status,
        "data": {
            "status": execution.status,
            "output_data": execution.output_data,
            "error": execution.error,
            "execution_time": execution.execution_time_ms,
        },
    }


def _envelopes(execution: Execution) -> list[dict[str, Any]]:
    """The events of one save, as the executor publishes them on `EVENTS`."""
    envelopes = []
    for event in execution.collect_events():
        translated = to_integration_event(event)
        assert translated is not None
        envelope = EventEnvelope.wrap(
            translated,
            source="executor",
            aggregate_id=str(execution.id),
            version=event.originator_version,
            occurred_at=event.timestamp,
        )
        envelopes.append(json.loads(envelope.model_dump_json()))
    return envelopes


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(message)))


class _Executor:
    """The socket's reads of the execution: counted, answered with the aggregate as it is."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.reads = 0

    async def read(self) -> dict[str, Any]:
        self.reads += 1
        return _record(self.execution)


Save = Callable[[Execution], object]

# A run through every kind of change, one save per step: a condition taking a branch, a node
# skipped, a loop with an item that fails, a model node retried, a log line.
STEPS: list[Save] = [
    lambda e: e.record_node_started("start-1", "start-1", "start", 1, {}),
    lambda e: (
        e.record_node_completed("start-1", 1, {"a": 1}, 3),
        e.record_node_started("cond-1", "cond-1", "condition", 1, {}),
        e.record_node_completed("cond-1", 1, True, 1, branch="true"),
        e.record_node_skipped("other-1", "other-1", "transform", "branch not taken"),
        e.record_node_started("loop-1", "loop-1", "loop", 1, {"items": [1, 2]}),
    ),
    lambda e: (
        e.record_iteration_started("loop-1", 0),
        e.record_node_started("body-1[0]", "body-1", "transform", 1, {}),
    ),
    lambda e: (
        e.record_node_completed("body-1[0]", 1, "one", 2),
        e.record_iteration_finished("loop-1", 0, True, "one", None),
        e.record_iteration_started("loop-1", 1),
        e.record_iteration_finished("loop-1", 1, False, None, "坏了"),
    ),
    lambda e: (
        e.record_node_completed("loop-1", 1, {"results": ["one"]}, 9),
        e.record_node_started("llm-1", "llm-1", "llm", 1, {}),
    ),
    lambda e: (
        e.record_node_failed("llm-1", 1, "超时", 30_000, final=False),
        e.record_log("warn", "重试", "llm-1", "llm", 30_000),
    ),
    lambda e: e.record_node_started("llm-1", "llm-1", "llm", 2, {}),
]
ENDINGS: dict[str, list[Save]] = {
    "completed": [
        lambda e: (
            e.record_node_completed("llm-1", 2, {"text": "好"}, 120),
            e.record_node_started("end-1", "end-1", "end", 1, {}),
            e.record_node_completed("end-1", 1, {"result": "好"}, 1),
            e.finish({"result": "好"}),
        )
    ],
    "failed": [
        lambda e: (
            e.record_node_failed("llm-1", 2, "超时", 30_000, final=True),
            e.fail("超时", "llm-1"),
            e.record_log("error", "超时"),
        )
    ],
    "cancelled": [lambda e: (e.cancel("someone"), e.record_log("warn", "取消"))],
}


def _connected(execution: Execution) -> tuple[ExecutionView, _Executor]:
    """A socket that connected after the run's creation: the one read, and the top-level
    nodes looked up from its ExecutionCreated."""
    (created,) = _envelopes(execution)
    executor = _Executor(execution)
    view = ExecutionView.of(_record(execution))
    view.learn_top_level(created["data"])
    return view, executor


def _new_execution() -> Execution:
    return Execution(uuid.uuid4(), uuid.uuid4(), 1, "流程", GRAPH, {"text": "x"})


def _statuses(sent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [message["data"] for message in sent if message["type"] == "status"]


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_each_status_is_what_the_executor_says_with_no_read(ending: str) -> None:
    async def follow() -> None:
        execution = _new_execution()
        view, executor = _connected(execution)
        for step in [*STEPS, *ENDINGS[ending]]:
            step(execution)
            socket = _Socket()
            ended = await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
            assert _statuses(socket.sent) == [_status(execution)]
            if ended:
                assert socket.sent[-1] == _final(execution)
        assert ended
        assert executor.reads == 0

    asyncio.run(follow())


def test_node_outputs_and_log_lines_come_from_the_events() -> None:
    async def follow() -> list[dict[str, Any]]:
        execution = _new_execution()
        view, executor = _connected(execution)
        socket = _Socket()
        for step in [*STEPS, *ENDINGS["completed"]]:
            step(execution)
            await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
        assert executor.reads == 0
        return socket.sent

    sent = asyncio.run(follow())
    outputs = [m["data"] for m in sent if m["type"] == "node_output"]
    assert outputs == [
        {"node_id": "start-1", "output": {"a": 1}},
        {"node_id": "cond-1", "output": True},
        {"node_id": "body-1", "output": "one"},
        {"node_id": "loop-1", "output": {"results": ["one"]}},
        {"node_id": "llm-1", "output": {"text": "好"}},
        {"node_id": "end-1", "output": {"result": "好"}},
    ]
    # What travels with an event for the socket is never part of the documented messages.
    for message in sent:
        if message["type"] in ("node_started", "node_completed"):
            assert not {"output", "log"} & set(message["data"]), message


def test_a_repeated_event_is_dropped() -> None:
    async def follow() -> tuple[list[dict[str, Any]], int]:
        execution = _new_execution()
        view, executor = _connected(execution)
        STEPS[0](execution)
        burst = _envelopes(execution)
        socket = _Socket()
        await live._pass_on(socket, burst, view, executor)  # type: ignore[arg-type]
        again = _Socket()
        await live._pass_on(again, burst, view, executor)  # type: ignore[arg-type]
        return again.sent, executor.reads

    sent, reads = asyncio.run(follow())
    assert sent == []
    assert reads == 0


def test_a_missed_event_is_made_up_by_one_read() -> None:
    async def follow() -> None:
        execution = _new_execution()
        view, executor = _connected(execution)
        for step in STEPS[:2]:
            step(execution)
            await live._pass_on(_Socket(), _envelopes(execution), view, executor)  # type: ignore[arg-type]
        STEPS[2](execution)
        _envelopes(execution)  # lost on the way (NATS reconnected meanwhile)
        STEPS[3](execution)
        socket = _Socket()
        await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
        assert executor.reads == 1
        assert _statuses(socket.sent) == [_status(execution)]
        # Then on as before, without reading.
        STEPS[4](execution)
        socket = _Socket()
        await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
        assert executor.reads == 1
        assert _statuses(socket.sent) == [_status(execution)]

    asyncio.run(follow())


def test_an_output_too_large_for_its_event_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integration, "MAX_PUBLISHED_OUTPUT_BYTES", 16)
    large = {"text": "很长的回答" * 10}

    async def follow() -> list[dict[str, Any]]:
        execution = _new_execution()
        view, executor = _connected(execution)
        STEPS[0](execution)
        await live._pass_on(_Socket(), _envelopes(execution), view, executor)  # type: ignore[arg-type]
        execution.record_node_completed("start-1", 1, large, 3)
        socket = _Socket()
        await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
        assert executor.reads == 1
        assert _statuses(socket.sent) == [_status(execution)]
        return socket.sent

    sent = asyncio.run(follow())
    assert {"type": "node_output", "data": {"node_id": "start-1", "output": large}} in sent


def test_changes_the_read_on_connect_already_held_are_not_counted_twice() -> None:
    """The socket subscribes before it reads: events of the saves just before the read may
    arrive after it, one save at a time. They are passed on, and the status stays what the
    read said (start-1 started again would take progress back)."""

    async def follow() -> None:
        execution = _new_execution()
        (created,) = _envelopes(execution)
        late = []
        for step in STEPS[:2]:
            step(execution)
            late.append(_envelopes(execution))
        executor = _Executor(execution)
        view = ExecutionView.of(await executor.read())  # the read on connect
        view.learn_top_level(created["data"])
        assert view.status_data() == _status(execution)
        for burst in late:
            socket = _Socket()
            await live._pass_on(socket, burst, view, executor)  # type: ignore[arg-type]
            assert socket.sent[0]["type"] in ("started", "node_completed")
            assert _statuses(socket.sent) == [_status(execution)]
        assert executor.reads == 1  # the one on connect

    asyncio.run(follow())


def test_a_failed_run_resumed_is_followed_again() -> None:
    """`ExecutionResumed`: failed nodes run again and skipped ones are decided again."""

    async def follow() -> None:
        execution = _new_execution()
        view, executor = _connected(execution)
        for step in [*STEPS, *ENDINGS["failed"]]:
            step(execution)
            for envelope in _envelopes(execution):
                view.is_new(envelope)
                view.fold(envelope)
        execution.resume("someone")
        for envelope in _envelopes(execution):
            view.is_new(envelope)
            view.fold(envelope)
        assert view.status_data() == _status(execution)
        execution.record_node_started("llm-1", "llm-1", "llm", 3, {})
        socket = _Socket()
        await live._pass_on(socket, _envelopes(execution), view, executor)  # type: ignore[arg-type]
        assert _statuses(socket.sent) == [_status(execution)]
        assert executor.reads == 0

    asyncio.run(follow())
