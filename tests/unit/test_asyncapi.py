"""The AsyncAPI document of the live execution WebSocket (docs/asyncapi.yaml) says what the
code really sends.

The messages are made by the code that makes them: events of a real `Execution` aggregate,
translated as the executor publishes them, passed through the gateway's socket code
(`services/gateway/live.py`), and a model text chunk from the worker's own sink. Each must
be a documented message whose payload schema it satisfies, and every documented server
message must be one the code sends. The document's structure is checked against the parts of
AsyncAPI 3.0 it uses (the official JSON Schema is not available offline).
"""

from __future__ import annotations

import ast
import asyncio
import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from services.executor.domain import Execution
from services.executor.integration import to_integration_event
from services.executor.messages import NodeRunCommand
from services.executor.worker.consumer import Worker
from services.gateway import live
from services.gateway.execution_view import ExecutionView
from services.gateway.openapi import asyncapi_document
from shared.bus.envelope import EventEnvelope
from shared.web.openapi import package_version

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT_URI = "urn:agentflow:asyncapi"
# The parts of AsyncAPI 3.0 this document uses, with the fields the specification requires.
STRUCTURE: dict[str, Any] = {
    "type": "object",
    "required": ["asyncapi", "info", "channels", "operations", "components"],
    "properties": {
        "asyncapi": {"const": "3.0.0"},
        "info": {
            "type": "object",
            "required": ["title", "version"],
            "properties": {"title": {"type": "string"}, "version": {"type": "string"}},
        },
        "servers": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["host", "protocol"],
                "properties": {"protocol": {"enum": ["ws", "wss"]}},
            },
        },
        "channels": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["address", "messages"],
                "properties": {
                    "address": {"type": "string", "pattern": "^/"},
                    "messages": {"type": "object", "minProperties": 1},
                },
            },
        },
        "operations": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["action", "channel"],
                "properties": {
                    "action": {"enum": ["send", "receive"]},
                    "channel": {
                        "type": "object",
                        "required": ["$ref"],
                        "properties": {"$ref": {"pattern": "^#/channels/"}},
                    },
                    "messages": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["$ref"],
                            "properties": {"$ref": {"pattern": "^#/channels/[^/]+/messages/"}},
                        },
                    },
                },
            },
        },
        "components": {
            "type": "object",
            "properties": {
                "messages": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["name", "payload"],
                    },
                },
                "securitySchemes": {
                    "type": "object",
                    "additionalProperties": {"type": "object", "required": ["type"]},
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    parsed = yaml.safe_load(asyncapi_document())
    assert isinstance(parsed, dict)
    return parsed


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _server_messages(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The messages of the `send` operations, by name."""
    found: dict[str, dict[str, Any]] = {}
    for operation in document["operations"].values():
        if operation["action"] != "send":
            continue
        for reference in operation["messages"]:
            message = _resolve(document, reference["$ref"])
            message = _resolve(document, message["$ref"]) if "$ref" in message else message
            found[message["name"]] = message
    return found


def test_the_document_has_the_structure_of_asyncapi_3(document: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(STRUCTURE).validate(document)
    for ref in _refs(document):
        _resolve(document, ref)  # every reference points into the document
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            # AsyncAPI 3.0: an operation's messages are messages of its channel.
            assert message["$ref"].startswith(channel + "/messages/"), message
    for message in document["components"]["messages"].values():
        jsonschema.Draft7Validator.check_schema(message["payload"])
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(schema)


def test_the_document_is_the_platforms_and_is_in_the_docs(document: dict[str, Any]) -> None:
    assert document["info"]["version"] == package_version()
    channel = document["channels"]["execution"]
    assert channel["address"] == "/api/v1/ws/executions/{execution_id}"
    assert set(channel["parameters"]) == {"execution_id"}
    schemes = document["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {
        ("query", "token"),
        ("header", "Sec-WebSocket-Protocol"),
    }
    # docs/asyncapi.yaml is the served document (a link to it), not a copy that can drift.
    assert (ROOT / "docs" / "asyncapi.yaml").read_bytes() == asyncapi_document()


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, message: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(message)))


class _Executor:
    """Answers the gateway's `GET /api/v1/executions/{id}` with the aggregate as it is."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    async def read(self) -> Any:
        execution = self.execution
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
        return json.loads(json.dumps(record))


def _envelopes(execution: Execution) -> list[dict[str, Any]]:
    """The execution's new events as the executor publishes them on `EVENTS`."""
    envelopes = []
    for event in execution.collect_events():
        translated = to_integration_event(event)
        if translated is None:
            continue
        envelope = EventEnvelope.wrap(
            translated,
            source="executor",
            aggregate_id=str(execution.id),
            version=event.originator_version,
            occurred_at=event.timestamp,
        )
        envelopes.append(json.loads(envelope.model_dump_json()))
    return envelopes


def _new_execution() -> Execution:
    return Execution(uuid.uuid4(), uuid.uuid4(), 1, "流程", {"nodes": [], "edges": []}, {"a": 1})


def _run(execution: Execution, ending: str) -> None:
    """Every kind of change a run goes through, then `ending`."""
    execution.record_node_started("start-1", "start-1", "start", 1, {})
    execution.record_node_completed("start-1", 1, {"a": 1}, 3)
    execution.record_node_started("cond-1", "cond-1", "condition", 1, {})
    execution.record_node_completed("cond-1", 1, True, 1, branch="true")
    execution.record_node_skipped("other-1", "other-1", "transform", "branch not taken")
    execution.record_node_started("loop-1", "loop-1", "loop", 1, {"items": [1, 2]})
    execution.record_iteration_started("loop-1", 0)
    execution.record_iteration_finished("loop-1", 0, True, {"r": 1}, None)
    execution.record_iteration_started("loop-1", 1)
    execution.record_iteration_finished("loop-1", 1, False, None, "坏了")
    execution.record_node_started("llm-1", "llm-1", "llm", 1, {})
    execution.record_node_failed("llm-1", 1, "超时", 30_000, final=False)
    execution.record_log("warn", "重试", "llm-1", "llm", 30_000)
    execution.record_log("info", "没有节点的日志")
    if ending == "completed":
        execution.finish({"result": "好"})
    elif ending == "failed":
        execution.record_node_failed("llm-1", 1, "超时", 30_000, final=True)
        execution.fail("超时", "llm-1")
    else:
        execution.cancel("someone")


async def _what_the_gateway_sends(ending: str) -> list[dict[str, Any]]:
    execution = _new_execution()
    executor = _Executor(execution)
    socket = _Socket()
    (created,) = _envelopes(execution)  # the creation: never sent to viewers
    view = ExecutionView.of(await executor.read())
    view.learn_top_level(created["data"])
    _run(execution, ending)
    events = _envelopes(execution)
    # As NATS delivers them: one at a time (each followed by a status), then all at once.
    for envelope in events[:5]:
        await live._pass_on(socket, [envelope], view, executor)  # type: ignore[arg-type]
    await live._pass_on(socket, events[5:], view, executor)  # type: ignore[arg-type]
    # On connect: the status, and for an ended run the final message.
    connected = ExecutionView.of(await executor.read())
    await socket.send_json({"type": "status", "data": connected.status_data()})
    await socket.send_json(connected.final_message())
    return socket.sent


async def _what_the_worker_streams() -> list[dict[str, Any]]:
    published: list[bytes] = []

    async def publish(subject: str, payload: bytes) -> None:
        assert subject == f"live.execution.{command.execution_id}"
        published.append(payload)

    command = NodeRunCommand(
        execution_id=str(uuid.uuid4()), run_key="llm-1[0]", node_id="llm-1", node_type="llm",
        attempt=2, data={}, input_data={}, node_types={}, records={}, upstream=[],
    )  # fmt: skip
    worker = SimpleNamespace(_bus=SimpleNamespace(nc=SimpleNamespace(publish=publish)))
    emit = Worker._chunk_sink(worker, command)  # type: ignore[arg-type]
    for text in ("今天", "天气很好"):
        await emit(text)
    socket = _Socket()
    envelopes = [json.loads(payload) for payload in published]
    view = ExecutionView.of(
        {"status": "running", "progress": 0, "current_node": "llm-1", "error": None,
         "output_data": None}
    )  # fmt: skip
    assert await live._pass_on(socket, envelopes, view, None) is False  # type: ignore[arg-type]
    return socket.sent


def _sent_by_the_code() -> list[dict[str, Any]]:
    async def everything() -> list[dict[str, Any]]:
        sent = []
        for ending in ("completed", "failed", "cancelled"):
            sent += await _what_the_gateway_sends(ending)
        return sent + await _what_the_worker_streams()

    return asyncio.run(everything())


def test_every_message_the_code_sends_is_documented_as_sent(document: dict[str, Any]) -> None:
    documented = _server_messages(document)
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT7)
    )
    sent = _sent_by_the_code()
    for message in sent:
        name = message.get("type")
        assert name in documented, f"undocumented message {name!r}: {message}"
        payload = documented[name]["payload"]
        ref = payload.get("$ref")
        schema = {"$ref": DOCUMENT_URI + ref} if ref else payload
        validator = jsonschema.Draft7Validator(schema, registry=registry)
        problems = [error.message for error in validator.iter_errors(message)]
        assert not problems, (name, problems, message)
    # ...and nothing is documented that the code never sends.
    assert {message["type"] for message in sent} == set(documented)


def test_every_message_type_in_the_socket_code_is_documented(document: dict[str, Any]) -> None:
    """Also the ones no run above happened to produce: the translation tables and every
    `{"type": "<literal>", ...}` the socket and the worker's chunk sink build."""
    in_code = {
        *live._MESSAGE_TYPES.values(),
        *live._NEWS_TYPES.values(),
        *live._FINAL.values(),
        *live.LIVE_ONLY,
    }
    for module in ("services/gateway/live.py", "services/executor/worker/consumer.py"):
        tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "type"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        in_code.add(value.value)
    assert in_code == set(_server_messages(document))
