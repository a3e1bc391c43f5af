"""Workflows through the gateway, as the seed documents them, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import itertools
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from services.workflows.schemas import SEED_EXAMPLE
from tests.integration.test_auth_journey import assert_error
from tests.support.events import wait_for_events
from tests.support.processes import REPO_ROOT
from tests.support.stack import Stack

W = "/api/v1/workflows"


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


@pytest.fixture
def other(stack: Stack) -> Iterator[httpx.Client]:
    client, _ = stack.user_client()
    with client:
        yield client


def create(client: httpx.Client, **overrides: Any) -> dict[str, Any]:
    body = {**copy.deepcopy(SEED_EXAMPLE), **overrides}
    response = client.post(W, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def test_seed_example_is_created_and_validated_as_is(me: httpx.Client) -> None:
    created = create(me)
    assert created["version"] == 1
    assert created["status"] == "draft"
    assert created["name"] == SEED_EXAMPLE["name"]
    assert created["nodes"] == SEED_EXAMPLE["nodes"]
    assert created["edges"] == SEED_EXAMPLE["edges"]
    assert {"id", "description", "created_at"} <= created.keys()
    fetched = me.get(f"{W}/{created['id']}").json()
    assert fetched == created
    report = me.post(f"{W}/validate", json=SEED_EXAMPLE).json()
    assert (report["valid"], report["errors"]) == (True, [])
    # `{input}` right after start: input_data's field `input`, or the whole input_data.
    assert [w["code"] for w in report["warnings"]] == ["AMBIGUOUS_REFERENCE"]


def test_a_users_list_includes_a_workflow_right_after_creating_it(me: httpx.Client) -> None:
    for _ in range(3):
        created = create(me, name=f"即时-{uuid.uuid4().hex[:6]}")
        listed = me.get(W, params={"sort_by": "created_at", "sort_order": "desc", "limit": 1})
        assert listed.json()[0]["id"] == created["id"]


def test_list_search_filter_sort_and_page(me: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"Alpha 报表 {tag}", f"beta 翻译 {tag}", f"Gamma 摘要 {tag}"]
    made = [create(me, name=name, description=f"描述 {i} ZhongWen") for i, name in enumerate(names)]
    me.put(f"{W}/{made[1]['id']}/status", json={"status": "published"}).raise_for_status()

    def names_for(**params: Any) -> list[str]:
        response = me.get(W, params={"search": tag, **params})
        assert response.status_code == 200, response.text
        return [item["name"] for item in response.json()]

    assert names_for(sort_by="name", sort_order="asc") == [names[0], names[1], names[2]]
    assert names_for(sort_by="name", sort_order="desc") == [names[2], names[1], names[0]]
    assert names_for(sort_by="created_at", sort_order="asc") == names
    assert names_for(sort_by="updated_at", sort_order="desc")[0] == names[1]
    assert names_for(status="published") == [names[1]]
    assert names_for(status="draft", sort_by="name", sort_order="asc") == [names[0], names[2]]
    assert names_for(sort_by="name", sort_order="asc", skip=1, limit=1) == [names[1]]
    # Case-insensitive, in names and descriptions, Chinese included.
    assert me.get(W, params={"search": f"ALPHA 报表 {tag}".upper()}).json()[0]["name"] == names[0]
    assert {i["name"] for i in me.get(W, params={"search": "翻译 " + tag}).json()} == {names[1]}
    by_description = me.get(W, params={"search": "zhongwen", "limit": 100}).json()
    assert set(names) <= {item["name"] for item in by_description}
    assert me.get(W, params={"search": "100%_no_such"}).json() == []
    items = me.get(W, params={"search": tag}).json()
    assert {"id", "name", "description", "nodes", "edges", "version", "status", "created_at"} <= (
        items[0].keys()
    )


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 101},
        {"limit": 0},
        {"skip": -1},
        {"status": "archived"},
        {"sort_by": "owner"},
        {"sort_order": "up"},
    ],
)
def test_bad_list_parameters_are_422(me: httpx.Client, params: dict[str, Any]) -> None:
    assert_error(me.get(W, params=params), 422, "VALIDATION_ERROR")


def test_another_users_workflow_is_404_everywhere(
    stack: Stack, me: httpx.Client, other: httpx.Client
) -> None:
    created = create(me)
    wid = created["id"]
    attempts = [
        other.get(f"{W}/{wid}"),
        other.put(f"{W}/{wid}", json={"name": "hijack"}),
        other.delete(f"{W}/{wid}"),
        other.put(f"{W}/{wid}/status", json={"status": "published"}),
        other.get(f"{W}/{wid}/export"),
        other.get(f"{W}/{wid}/versions"),
        other.get(f"{W}/{wid}/versions/1"),
        other.post(f"{W}/{wid}/versions/1/rollback", json={"comment": "x"}),
    ]
    for response in attempts:
        assert_error(response, 404, "WORKFLOW_NOT_FOUND")
    assert wid not in {item["id"] for item in other.get(W).json()}
    assert me.get(f"{W}/{wid}").json()["name"] == created["name"]  # untouched
    with stack.admin_client() as admin:
        assert admin.get(f"{W}/{wid}").status_code == 200
        assert wid in {item["id"] for item in admin.get(W, params={"limit": 100}).json()}


def test_unknown_and_malformed_ids_are_404(me: httpx.Client) -> None:
    assert_error(me.get(f"{W}/{uuid.uuid4()}"), 404, "WORKFLOW_NOT_FOUND")
    assert_error(me.get(f"{W}/not-a-uuid"), 404, "WORKFLOW_NOT_FOUND")


def test_update_versions_and_no_op(me: httpx.Client) -> None:
    created = create(me)
    wid = created["id"]
    nodes = copy.deepcopy(created["nodes"])
    nodes[1]["data"]["prompt"] = "请翻译:{input}"
    updated = me.put(f"{W}/{wid}", json={"nodes": nodes, "comment": "改提示词"}).json()
    assert updated["version"] == 2
    assert updated["nodes"][1]["data"]["prompt"] == "请翻译:{input}"
    assert updated["updated_at"] > created["updated_at"]
    same = me.put(f"{W}/{wid}", json={"nodes": nodes, "name": created["name"]}).json()
    assert same["version"] == 2  # nothing changed, no version
    renamed = me.put(f"{W}/{wid}", json={"name": "新名字"}).json()
    assert (renamed["version"], renamed["name"], renamed["nodes"]) == (3, "新名字", nodes)
    versions = me.get(f"{W}/{wid}/versions").json()
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["kind"] for v in versions] == ["created", "updated", "updated"]
    assert versions[1]["comment"] == "改提示词"
    assert "llm-1" in versions[1]["summary"]
    assert "新名字" in versions[2]["summary"]
    assert versions[0]["author"]["username"]


def test_expected_version_guards_against_lost_updates(me: httpx.Client) -> None:
    wid = create(me)["id"]
    assert me.put(f"{W}/{wid}", json={"name": "A", "expected_version": 1}).status_code == 200
    stale = me.put(f"{W}/{wid}", json={"name": "B", "expected_version": 1})
    assert_error(stale, 409, "VERSION_CONFLICT")
    assert me.get(f"{W}/{wid}").json()["name"] == "A"


def test_concurrent_updates_are_all_kept_in_history(me: httpx.Client) -> None:
    wid = create(me)["id"]

    def rename(i: int) -> int:
        return me.put(
            f"{W}/{wid}", json={"name": f"并发 {i}", "comment": f"writer {i}"}
        ).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(rename, range(6)))
    assert statuses == [200] * 6
    versions = me.get(f"{W}/{wid}/versions").json()
    assert len(versions) == 7
    assert sorted(v["comment"] for v in versions[1:]) == [f"writer {i}" for i in range(6)]
    final = me.get(f"{W}/{wid}").json()
    assert final["version"] == 7
    assert final["name"] == f"并发 {versions[-1]['comment'].split()[-1]}"


def test_rollback_appends_a_version_with_the_old_content(me: httpx.Client) -> None:
    created = create(me)
    wid = created["id"]
    me.put(f"{W}/{wid}", json={"name": "v2", "edges": []}).raise_for_status()
    me.put(f"{W}/{wid}", json={"name": "v3", "description": "third"}).raise_for_status()
    rolled = me.post(f"{W}/{wid}/versions/1/rollback", json={"comment": "回滚原因"})
    assert rolled.status_code == 200, rolled.text
    body = rolled.json()
    assert body["version"] == 4
    assert (body["name"], body["description"], body["nodes"], body["edges"]) == (
        created["name"],
        created["description"],
        created["nodes"],
        created["edges"],
    )
    versions = me.get(f"{W}/{wid}/versions").json()
    assert [v["kind"] for v in versions] == ["created", "updated", "updated", "rolled_back"]
    assert versions[3]["rolled_back_to"] == 1
    assert versions[3]["comment"] == "回滚原因"
    two = me.get(f"{W}/{wid}/versions/2").json()
    assert (two["name"], two["edges"], two["version"]) == ("v2", [], 2)
    three = me.get(f"{W}/{wid}/versions/3").json()
    assert (three["name"], three["description"]) == ("v3", "third")
    assert_error(me.get(f"{W}/{wid}/versions/9"), 404, "VERSION_NOT_FOUND")
    assert_error(me.post(f"{W}/{wid}/versions/9/rollback", json={}), 404, "VERSION_NOT_FOUND")
    assert_error(me.get(f"{W}/{wid}/versions/0"), 422, "VALIDATION_ERROR")


def test_delete_hides_but_keeps_history(stack: Stack, me: httpx.Client) -> None:
    wid = create(me)["id"]
    deleted = me.delete(f"{W}/{wid}")
    assert deleted.json() == {"message": "工作流已删除"}
    assert (
        me.delete(f"{W}/{uuid.uuid4()}", headers={"Accept-Language": "en"}).json()["detail"]
        == "Workflow not found"
    )
    assert_error(me.get(f"{W}/{wid}"), 404, "WORKFLOW_NOT_FOUND")
    assert_error(me.delete(f"{W}/{wid}"), 404, "WORKFLOW_NOT_FOUND")
    assert wid not in {item["id"] for item in me.get(W, params={"limit": 100}).json()}
    events = wait_for_events(stack.nats.url, f"events.workflow.{wid}.>", at_least=2)
    assert [e.envelope["type"] for e in events] == ["WorkflowCreated", "WorkflowDeleted"]


def test_status_changes(me: httpx.Client) -> None:
    wid = create(me)["id"]
    published = me.put(f"{W}/{wid}/status", json={"status": "published"})
    assert published.json()["status"] == "published"
    assert me.put(f"{W}/{wid}/status", json={"status": "stopped"}).json()["status"] == "stopped"
    assert_error(me.put(f"{W}/{wid}/status", json={"status": "running"}), 422, "VALIDATION_ERROR")
    broken = create(me, nodes=SEED_EXAMPLE["nodes"][:2], edges=SEED_EXAMPLE["edges"][:1])
    refused = me.put(f"{W}/{broken['id']}/status", json={"status": "published"})
    body = assert_error(refused, 422, "INVALID_WORKFLOW")
    assert body["errors"]
    assert me.get(f"{W}/{broken['id']}").json()["status"] == "draft"
    # A status change is not a content version.
    assert me.get(f"{W}/{wid}").json()["version"] == 1


def test_invalid_drafts_can_be_saved_but_ids_must_be_unique(me: httpx.Client) -> None:
    draft = create(me, nodes=[{"id": "x", "type": "mystery"}], edges=[])
    assert draft["nodes"] == [{"id": "x", "type": "mystery"}]
    twice = copy.deepcopy(SEED_EXAMPLE)
    twice["nodes"].append(copy.deepcopy(twice["nodes"][0]))
    assert_error(me.post(W, json=twice), 422, "DUPLICATE_ID")
    assert_error(me.post(W, json={"name": ""}), 422, "VALIDATION_ERROR")
    assert_error(
        me.post(W, json={"name": "x", "nodes": [{"type": "llm"}]}), 422, "VALIDATION_ERROR"
    )


def test_export_import_round_trip(me: httpx.Client, other: httpx.Client) -> None:
    original = create(me, description="往返 round trip")
    exported = me.get(f"{W}/{original['id']}/export").json()
    assert {"workflow", "exported_at"} <= exported.keys()
    assert exported["workflow"]["format_version"] == 1
    imported = other.post(f"{W}/import", json={"workflow": exported["workflow"]})
    assert imported.status_code == 201, imported.text
    copy_ = imported.json()
    assert copy_["id"] != original["id"]
    assert copy_["version"] == 1
    again = other.get(f"{W}/{copy_['id']}/export").json()["workflow"]
    ignored = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in again.items() if k not in ignored} == {
        k: v for k, v in exported["workflow"].items() if k not in ignored
    }
    renamed = me.post(f"{W}/import", json={"workflow": exported["workflow"], "name": "副本"})
    assert renamed.json()["name"] == "副本"


@pytest.mark.parametrize(
    ("workflow", "code"),
    [
        ({"name": "no format"}, "IMPORT_MALFORMED"),
        ({"format_version": 1, "name": "x", "nodes": "not a list"}, "IMPORT_MALFORMED"),
        ({"format_version": 1, "name": "x", "nodes": [{"id": "a"}]}, "IMPORT_MALFORMED"),
        ({"format_version": 99, "name": "future"}, "IMPORT_UNSUPPORTED_FORMAT"),
    ],
)
def test_bad_imports_are_422(me: httpx.Client, workflow: dict[str, Any], code: str) -> None:
    assert_error(me.post(f"{W}/import", json={"workflow": workflow}), 422, code)


def test_import_needs_a_workflow_object(me: httpx.Client) -> None:
    assert_error(me.post(f"{W}/import", json={"workflow": "text"}), 422, "VALIDATION_ERROR")
    assert_error(me.post(f"{W}/import", json={}), 422, "VALIDATION_ERROR")


def test_templates_are_valid_and_instantiable(me: httpx.Client) -> None:
    templates = me.get(f"{W}/templates").json()
    assert len(templates) >= 6
    for template in templates:
        report = me.post(f"{W}/validate", json=template).json()
        assert report["valid"], (template["id"], report["errors"])
    first = templates[0]
    made = me.post(
        f"{W}/templates/{first['id']}/create", params={"name": "我的摘要", "description": "描述"}
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["name"], body["description"], body["nodes"]) == (
        "我的摘要",
        "描述",
        first["nodes"],
    )
    default = me.post(f"{W}/templates/{first['id']}/create").json()
    assert default["name"] == first["name"]
    versions = me.get(f"{W}/{body['id']}/versions").json()
    assert versions[0]["summary"] == f"created from template:{first['id']}"
    assert_error(me.post(f"{W}/templates/nope/create"), 404, "TEMPLATE_NOT_FOUND")


def big_workflow(n: int) -> dict[str, Any]:
    nodes = [{"id": "start-1", "type": "start", "position": {"x": 0, "y": 0}, "data": {}}]
    for i in range(n - 2):
        nodes.append(
            {
                "id": f"t-{i}",
                "type": "transform",
                "position": {"x": 10 * i, "y": 0},
                "data": {"mode": "template", "template": f"step {i}: {{value}}"},
            }
        )
    nodes.append({"id": "end-1", "type": "end", "position": {"x": 0, "y": 0}, "data": {}})
    ids = [node["id"] for node in nodes]
    edges = [
        {"id": f"e{i}", "source": a, "target": b}
        for i, (a, b) in enumerate(itertools.pairwise(ids))
    ]
    return {"name": f"大工作流 {n}", "description": "", "nodes": nodes, "edges": edges}


def test_a_500_node_workflow_works(me: httpx.Client) -> None:
    body = big_workflow(500)
    created = me.post(W, json=body)
    assert created.status_code == 201, created.text
    wid = created.json()["id"]
    assert me.post(f"{W}/validate", json=body).json()["valid"]
    body["nodes"][250]["data"]["template"] = "changed {value}"
    updated = me.put(f"{W}/{wid}", json={"nodes": body["nodes"]}).json()
    assert updated["version"] == 2
    summary = me.get(f"{W}/{wid}/versions").json()[1]["summary"]
    assert summary == "~1 node (t-249)"
    assert me.get(f"{W}/{wid}/versions/1").json()["nodes"][250]["data"]["template"] == (
        "step 249: {value}"
    )


def test_oversized_workflows_are_refused(me: httpx.Client) -> None:
    assert_error(me.post(W, json=big_workflow(2001)), 422, "VALIDATION_ERROR")
    huge = {"name": "huge", "description": "x" * (11 * 1024 * 1024)}
    assert_error(me.post(W, json=huge), 413, "PAYLOAD_TOO_LARGE")


def test_workflow_events_reach_the_stream(stack: Stack, me: httpx.Client) -> None:
    wid = create(me)["id"]
    me.put(f"{W}/{wid}", json={"name": "事件"}).raise_for_status()
    me.post(f"{W}/{wid}/versions/1/rollback", json={"comment": "c"}).raise_for_status()
    me.put(f"{W}/{wid}/status", json={"status": "published"}).raise_for_status()
    events = wait_for_events(stack.nats.url, f"events.workflow.{wid}.>", at_least=4)
    assert [e.envelope["type"] for e in events] == [
        "WorkflowCreated",
        "WorkflowUpdated",
        "WorkflowRolledBack",
        "WorkflowStatusChanged",
    ]
    assert events[2].envelope["data"]["to_version"] == 1
    assert "nodes" not in events[0].envelope["data"]


def test_rebuilding_the_read_model_gives_the_same_list(stack: Stack, me: httpx.Client) -> None:
    for i in range(3):
        create(me, name=f"重建 {i}")
    before = me.get(W, params={"sort_by": "name", "sort_order": "asc"}).json()
    with stack.admin_client() as admin:
        everyone_before = admin.get(W, params={"limit": 100, "sort_by": "name"}).json()
    result = subprocess.run(
        [sys.executable, "-m", "services.workflows.cli", "rebuild-read-model"],
        env=stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "rebuilt" in result.stdout
    assert me.get(W, params={"sort_by": "name", "sort_order": "asc"}).json() == before
    with stack.admin_client() as admin:
        assert admin.get(W, params={"limit": 100, "sort_by": "name"}).json() == everyone_before


def _graph(*nodes: tuple[str, str, dict[str, Any]], edges: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "name": "校验",
        "nodes": [{"id": i, "type": t, "data": d} for i, t, d in nodes],
        "edges": [{"id": f"e{n}", "source": s, "target": t} for n, (s, t) in enumerate(edges)],
    }


START: tuple[str, str, dict[str, Any]] = ("start-1", "start", {})
END: tuple[str, str, dict[str, Any]] = ("end-1", "end", {})
LLM: dict[str, Any] = {"provider": "deepseek", "model": "deepseek-chat", "prompt": "hi"}

ERROR_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("NO_START_NODE", _graph(END, edges=[]), None),
    ("NO_END_NODE", _graph(START, edges=[]), None),
    (
        "MULTIPLE_START_NODES",
        _graph(START, ("start-2", "start", {}), END, edges=[("start-1", "end-1")]),
        "start-2",
    ),
    (
        "EDGE_TARGET_MISSING",
        _graph(START, END, edges=[("start-1", "end-1"), ("start-1", "ghost")]),
        None,
    ),
    (
        "EDGE_SOURCE_MISSING",
        _graph(START, END, edges=[("start-1", "end-1"), ("ghost", "end-1")]),
        None,
    ),
    (
        "UNKNOWN_NODE_TYPE",
        _graph(START, ("x-1", "teleport", {}), END, edges=[("start-1", "x-1"), ("x-1", "end-1")]),
        "x-1",
    ),
    (
        "INVALID_NODE_CONFIG",
        _graph(
            START,
            ("llm-1", "llm", {"provider": "deepseek", "temperature": 9}),
            END,
            edges=[("start-1", "llm-1"), ("llm-1", "end-1")],
        ),
        "llm-1",
    ),
    (
        "CYCLE",
        _graph(
            START,
            ("a", "transform", {"mode": "template", "template": "{value}"}),
            ("b", "transform", {"mode": "template", "template": "{value}"}),
            END,
            edges=[("start-1", "a"), ("a", "b"), ("b", "a"), ("b", "end-1")],
        ),
        None,
    ),
    (
        "INVALID_EXPRESSION",
        _graph(
            START,
            ("condition-1", "condition", {"expression": "{value} >"}),
            END,
            edges=[("start-1", "condition-1"), ("condition-1", "end-1")],
        ),
        "condition-1",
    ),
    (
        "UNKNOWN_REFERENCE",
        _graph(
            START,
            ("llm-1", "llm", {**LLM, "prompt": "{llm-9.text}"}),
            END,
            edges=[("start-1", "llm-1"), ("llm-1", "end-1")],
        ),
        "llm-1",
    ),
    (
        "REFERENCE_NOT_UPSTREAM",
        _graph(
            START,
            ("llm-1", "llm", {**LLM, "prompt": "{llm-2.text}"}),
            ("llm-2", "llm", LLM),
            END,
            edges=[("start-1", "llm-1"), ("llm-1", "llm-2"), ("llm-2", "end-1")],
        ),
        "llm-1",
    ),
]


@pytest.mark.parametrize(("code", "graph", "node_id"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_validation_names_each_kind_of_error(
    me: httpx.Client, code: str, graph: dict[str, Any], node_id: str | None
) -> None:
    report = me.post(f"{W}/validate", json=graph).json()
    assert report["valid"] is False
    matching = [issue for issue in report["errors"] if issue["code"] == code]
    assert matching, report
    assert matching[0]["message"]
    if node_id is not None:
        assert matching[0]["node_id"] == node_id
    english = me.post(f"{W}/validate", json=graph, headers={"Accept-Language": "en"}).json()
    assert english["errors"][0]["message"] != report["errors"][0]["message"]


def test_validation_warnings(me: httpx.Client) -> None:
    graph = _graph(
        START,
        ("input-1", "input", {"fields": [{"name": "unused", "type": "string"}]}),
        ("llm-1", "llm", LLM),
        ("lonely", "llm", LLM),
        END,
        edges=[("start-1", "input-1"), ("input-1", "llm-1"), ("llm-1", "end-1")],
    )
    report = me.post(f"{W}/validate", json=graph).json()
    assert report["valid"] is True
    codes = {(w["code"], w.get("node_id")) for w in report["warnings"]}
    assert ("UNREACHABLE_NODE", "lonely") in codes
    assert ("DEAD_END", "lonely") in codes
    assert any(code == "UNUSED_INPUT" for code, _ in codes)
