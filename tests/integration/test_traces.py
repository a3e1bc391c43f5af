"""One execution's trace, from the gateway through the executor api to the worker and its
LLM call, as the spans every process wrote (AGENTFLOW_TRACE_FILE) show it."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from tests.integration.test_executions import W, create_workflow, wait_finished
from tests.support.stack import Stack
from tests.unit.workflow.builders import SEED_EXAMPLE


def spans_of(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_one_execution_is_one_trace_across_gateway_executor_and_worker(
    fresh_stack: Any, tmp_path: Path
) -> None:
    trace_file = tmp_path / "spans.jsonl"
    stack: Stack = fresh_stack({"AGENTFLOW_TRACE_FILE": str(trace_file)}).start()
    client, _ = stack.user_client()
    with client:
        wid = create_workflow(client, copy.deepcopy(SEED_EXAMPLE))
        run = client.post(f"{W}/{wid}/execute", json={"input_data": {"text": "追踪"}}).json()
        assert wait_finished(client, run["id"])["status"] == "completed"

    execute_route = "/api/v1/workflows/{workflow_id}/execute"
    deadline = time.monotonic() + 10
    while True:
        spans = spans_of(trace_file)
        started = [s for s in spans if s["attributes"].get("http.route") == execute_route]
        trace_id = started[0]["trace_id"] if started else None
        mine = [s for s in spans if s["trace_id"] == trace_id]
        if any(s["name"] == "chat deepseek-chat" for s in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert started, "the executor wrote no span for POST /execute"
    by_id = {s["span_id"]: s for s in mine}
    execute = started[0]
    assert execute["service"] == "agentflow-executor"
    gateway = by_id[execute["parent_id"]]  # the gateway's span is the executor span's parent
    assert (gateway["service"], gateway["kind"]) == ("agentflow-gateway", "SERVER")
    assert gateway["name"].startswith("POST")
    # Control nodes run inline in the executor api (a span each there); the model node is
    # dispatched to a worker, whose span continues the trace from the message headers.
    inline = [s for s in mine if s["service"] == "agentflow-executor" and s["kind"] == "INTERNAL"]
    assert {s["name"] for s in inline} >= {"run start", "run end"}
    assert all(s["attributes"]["agentflow.execution_id"] == run["id"] for s in inline)
    dispatched = {s["name"] for s in mine if s["kind"] == "PRODUCER"}
    assert dispatched == {"dispatch llm"}
    runs = [s for s in mine if s["service"] == "agentflow-worker" and s["kind"] == "CONSUMER"]
    assert {s["name"] for s in runs} == {"run llm"}
    for span in runs:
        assert by_id[span["parent_id"]]["kind"] == "PRODUCER"  # the dispatch it came from
        assert span["attributes"]["agentflow.execution_id"] == run["id"]
    chat = next(s for s in mine if s["name"] == "chat deepseek-chat")
    assert by_id[chat["parent_id"]]["name"] == "run llm"
    assert chat["attributes"]["gen_ai.usage.output_tokens"] > 0
