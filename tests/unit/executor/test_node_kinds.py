"""One table says, per node type, what the executor does with it: its config model, where it
runs (in the orchestrator's decision pass or on a worker) and its default timeout. A worker
sent any node (inline runs off) runs it by the same table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.executor.inline import runs_inline
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.node_kinds import NODE_KINDS
from services.executor.settings import WorkerSettings
from services.executor.worker.consumer import Worker
from services.executor.worker.llm.client import ChatClient
from services.executor.worker.runners.context import NodeServices
from shared.bus.client import JetStreamBus
from shared.net.outbound import OutboundPolicy
from shared.workflow.model import NODE_TYPES
from shared.workflow.nodes import NODE_DATA_MODELS

DOCS = Path(__file__).resolve().parents[3] / "docs" / "workflow-model.md"


def test_every_node_type_has_one_kind_configured_as_workflows_are_validated() -> None:
    assert set(NODE_KINDS) == set(NODE_TYPES)
    for node_type, kind in NODE_KINDS.items():
        assert kind.node_type == node_type
        assert kind.config is NODE_DATA_MODELS[node_type]


@pytest.mark.parametrize(
    ("node_type", "data", "inline"),
    [
        ("start", {}, True),
        ("input", {}, True),
        ("condition", {"expression": "true"}, True),
        ("transform", {"template": "{value}"}, True),
        ("transform", {"mode": "jmespath", "expression": "a"}, True),
        ("transform", {"mode": "mapping", "mapping": {"a": 1}}, True),
        ("transform", {"mode": "data_source", "data_source_id": "d", "query": "q"}, False),
        ("output", {}, True),
        ("end", {}, True),
        ("llm", {"prompt": "hi"}, False),
        ("agent", {"prompt": "hi"}, False),
        ("loop", {"items_path": "{input.items}"}, False),
        ("no-such-type", {}, False),
    ],
)
def test_control_nodes_run_in_the_decision_pass_the_rest_on_workers(
    node_type: str, data: dict[str, Any], inline: bool
) -> None:
    assert runs_inline(node_type, data) is inline


def test_default_timeouts_are_the_documented_ones() -> None:
    paragraph = DOCS.read_text(encoding="utf-8").split("Default timeouts:", 1)[1].split("\n\n")[0]
    documented: dict[str, float] = {}
    for names, seconds in re.findall(r"((?:`\w+`(?:,\s+)?)+)\s+(\d+) s", paragraph):
        for name in re.findall(r"`(\w+)`", names):
            documented[name] = float(seconds)
    assert documented == {t: kind.default_timeout for t, kind in NODE_KINDS.items()}


def _command(node_type: str, data: dict[str, Any]) -> NodeRunCommand:
    return NodeRunCommand(
        execution_id="e-1", run_key="n-1", node_id="n-1", node_type=node_type, attempt=1,
        data=data, input_data={"n": 12}, node_types={"start-1": "start"},
        records={"start-1": {"n": 12}}, upstream=["start-1"], language="en",
    )  # fmt: skip


async def _worker_runs(node_type: str, data: dict[str, Any]) -> tuple[NodeRunResult, str]:
    settings = WorkerSettings(environment="test")
    async with httpx.AsyncClient() as http:
        services = NodeServices(
            http=http, chat=ChatClient(http), outbound=OutboundPolicy(), environ={}
        )
        worker = Worker(JetStreamBus(settings, name="test-worker"), settings, services)
        return await worker.run(_command(node_type, data))


async def test_a_worker_runs_what_the_table_says(service_env: None) -> None:
    # A control node, as when the orchestrator's inline runs are off.
    result, outcome = await _worker_runs("transform", {"template": "n is {input.n}"})
    assert (outcome, result.output) == ("ok", "n is 12")
    # The data_source mode of the same type needs a data source: the worker runner.
    data = {"mode": "data_source", "data_source_id": "d-1", "query": "select 1"}
    result, outcome = await _worker_runs("transform", data)
    assert outcome == "failed"
    assert result.error == (
        "the executor has no data sources service configured (AGENTFLOW_DATASOURCES_URL)"
    )
    # A config edited into something invalid since it was validated.
    result, outcome = await _worker_runs("condition", {"expression": 42})
    assert outcome == "failed"
    assert (result.error or "").startswith("invalid node configuration: ")
    # Loops are run by the decisions, never by a runner.
    result, outcome = await _worker_runs("loop", {"items_path": "{input.items}"})
    assert (outcome, result.error) == (
        "failed",
        "Node type loop is not implemented by the executor yet",
    )
