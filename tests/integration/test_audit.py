"""Auditing the history: the operator's `agentflow-audit` tool and the admins' history API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from typing import Any

import httpx

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import BRANCHING, E, W, create_workflow, wait_finished
from tests.support.stack import Stack


def audit(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.audit.cli", *args],
        env=stack.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def finished_run(me: httpx.Client) -> dict[str, Any]:
    wid = create_workflow(me, BRANCHING)
    run = me.post(f"{W}/{wid}/execute", json={"input_data": {"text": "审计"}}).json()
    record = wait_finished(me, run["id"])
    assert record["status"] == "completed"
    return record


def test_the_audit_tool_replays_and_verifies_the_history(stack: Stack, me: httpx.Client) -> None:
    record = finished_run(me)
    run_id = record["id"]

    history = audit(stack, "history", "executor", run_id, "--at", "1", "--json")
    assert history.returncode == 0, history.stderr
    lines = [json.loads(line) for line in history.stdout.splitlines()]
    kinds = [line["type"] for line in lines[:-1]]
    assert kinds[0] == "Execution.Created"
    assert kinds[-1] == "Execution.Completed"
    assert "Execution.NodeCompleted" in kinds
    assert lines[-1]["state_at_version"]["state"]["status"] == "pending"  # after version 1

    store = audit(stack, "store", "executor", "--id", run_id, "--type", "NodeCompleted")
    completed = [json.loads(line) for line in store.stdout.splitlines()]
    ran = {key for key, node in record["nodes"].items() if node["status"] == "completed"}
    assert {c["data"]["run_key"] for c in completed} == ran
    table = audit(stack, "store", "auth", "--format", "table")
    assert "User.Registered" in table.stdout
    assert "password" not in table.stdout.lower().replace("passwordchanged", "")

    deadline = time.monotonic() + 20
    while True:  # the relay publishes right after each save; give it a moment
        checked = audit(stack, "verify", "executor", "--json")
        report = json.loads(checked.stdout)
        if checked.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert checked.returncode == 0, report
    assert (report["missing"], report["duplicates"], report["unknown"]) == (0, 0, 0)
    assert report["published"] == report["stored_publishable"] > 0
    assert report["stream_last_sequence"] > 0
    shown = audit(stack, "verify", "executor")  # a table by default
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert re.search(rf"stored, to be published\s+{report['stored_publishable']}\b", shown.stdout)
    assert re.search(r"missing from the stream\s+0\b", shown.stdout)
    assert "OK" in shown.stdout
    steps = audit(stack, "history", "executor", run_id)
    assert re.search(r"version\s+time\s+type\s+data", steps.stdout)
    assert "Execution.NodeCompleted" in steps.stdout
    assert "Execution at now" in steps.stdout

    stream = audit(stack, "stream", "--aggregate", "execution", "--id", run_id)
    envelopes = [json.loads(line) for line in stream.stdout.splitlines()]
    assert envelopes[0]["type"] == "ExecutionCreated"
    assert envelopes[-1]["type"] == "ExecutionCompleted"
    positions = [e["position"] for e in envelopes]
    assert positions == sorted(positions)
    later = audit(stack, "stream", "--from-seq", str(positions[-1]), "--id", run_id)
    assert [json.loads(line)["type"] for line in later.stdout.splitlines()] == [
        "ExecutionCompleted"
    ]

    rebuilt = audit(stack, "rebuild-check", "executor", "--json")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert json.loads(rebuilt.stdout)["equal"] is True
    for service in ("workflows", "datasources"):
        table = audit(stack, "rebuild-check", service)
        assert table.returncode == 0, table.stdout + table.stderr
        assert re.search(r"events replayed\s+\d+", table.stdout)
        assert "OK: equal" in table.stdout


def test_admins_read_an_aggregates_history_with_secrets_redacted(
    stack: Stack, me: httpx.Client
) -> None:
    record = finished_run(me)
    assert_error(me.get(f"{E}/{record['id']}/history"), 403, "FORBIDDEN")
    source = me.post("/api/v1/data-sources", json={
        "name": "库", "type": "mysql",
        "config": {"host": "db.example", "database": "d", "username": "u", "password": "pw-123"},
    }).json()  # fmt: skip
    with stack.admin_client() as admin:
        history = admin.get(f"{E}/{record['id']}/history").json()
        assert history["events"][0]["type"] == "Execution.Created"
        assert history["state"]["state"]["status"] == "completed"
        first = admin.get(f"{E}/{record['id']}/history", params={"at_version": 1}).json()
        assert first["state"]["version"] == 1
        workflow = admin.get(f"{W}/{record['workflow_id']}/history").json()
        assert workflow["events"][0]["type"] == "Workflow.Created"
        secret = admin.get(f"/api/v1/data-sources/{source['id']}/history").json()
        assert secret["events"][0]["data"]["secrets"] == "[redacted]"
        assert "pw-123" not in json.dumps(secret)
        assert_error(admin.get(f"{E}/{source['id']}/history"), 404, "NOT_FOUND")
        assert_error(admin.get(f"{E}/not-an-id/history"), 404, "NOT_FOUND")
