"""Reading a running execution from many threads while the orchestrator records its results:
every read is a consistent copy (the aggregate cache is shared between threads)."""

from __future__ import annotations

import sys
import threading
import uuid

import pytest

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.settings import ExecutorSettings


def test_reads_never_see_a_cached_execution_being_changed(
    store: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    app = ExecutorApplication(ExecutorSettings(environment="test", jwt_secret="x" * 40))
    execution = Execution(uuid.uuid4(), uuid.uuid4(), 1, "w", {"nodes": [], "edges": []}, {})
    app.save(execution)
    errors: list[BaseException] = []
    done = threading.Event()

    def record_results() -> None:
        try:
            for i in range(300):

                def step(run: Execution, i: int = i) -> bool:
                    key = f"node-{i}"
                    run.record_node_started(key, key, "transform", 1, {"value": "x" * 50})
                    return run.record_node_completed(key, 1, {"n": i, "items": list(range(20))}, 0)

                app.change(execution.id, step)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                seen = app.get(execution.id)
                assert all(node["status"] == "completed" for node in seen.nodes.values())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=record_results)] + [
        threading.Thread(target=read) for _ in range(4)
    ]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so an unsafe interleaving shows up
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert len(app.get(execution.id).nodes) == 300
