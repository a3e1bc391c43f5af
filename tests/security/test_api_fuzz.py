"""Fuzz the whole public API from its own `/openapi.json` (issue 8, "Bad input").

schemathesis (its CLI, in a subprocess) reads the gateway's merged document and sends what
it generates through :8037 as a signed-in user: the documented examples, boundary and
type-breaking values of every parameter and body (coverage phase), random cases (fuzzing)
and chains of calls along the links it infers (stateful). Path parameters are drawn half the
time from the user's real resources (a workflow with two versions, an execution, data
sources), so cases reach past 404 into the handlers.

Every response must: not be a server fault (no 500; a 5xx only where an external system the
user named failed, with its documented code), have a documented status code, content type
and schema, and, for every error, the platform's shape `{"detail", "error_code",
"status_code"}`. The two checks of our own below are loaded into schemathesis as its hooks.

Both stores (PostgreSQL refuses what SQLite takes, e.g. NUL in text). `make test`: a few
examples per operation and a short budget; `make security`: many more examples and a longer
budget. Figures: operations fuzzed, cases generated, failures found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis

from tests.integration.test_auth_journey import assert_error
from tests.integration.test_executions import BRANCHING, W, create_workflow, wait_finished
from tests.support.databases import (
    MARIADB_REQUIRED,
    mariadb_unavailable_reason,
    temporary_mariadb_database,
)
from tests.support.fake_llm import FakeLLM
from tests.support.figures import LONG, Figures, scale
from tests.support.platform_fixtures import module_platform
from tests.support.stack import Stack
from tests.support.stores import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
SUITE = "security: API fuzz"
EXAMPLES = scale(8, 150)  # cases per operation in each fuzzing pass
BUDGET_S = scale(15, 600)  # fuzzing and stateful phases stop when it is spent
ERROR_KEYS = {"detail", "error_code", "status_code"}
# A 5xx that is not the platform's fault: the data source the user registered failed.
EXTERNAL_FAILURES = {(502, "DATA_SOURCE_UNAVAILABLE"), (504, "QUERY_TIMEOUT")}
CHECKS = [
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "no_server_fault",
    "error_shape",
]
# Per-user start limits lifted so that fuzzed starts keep reaching the start path instead of
# its 429 (which test_execution_limits covers); everything else at its default.
SETTINGS = {
    "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "100000",
    "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "100000",
}


# -- our checks, loaded by the schemathesis process from this file (config `hooks`) ----------


def _json(response: schemathesis.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


@schemathesis.check
def no_server_fault(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """`not_a_server_error`, except for an external system's documented failure."""
    if response.status_code < 500:
        return None
    body = _json(response)
    code = body.get("error_code") if isinstance(body, dict) else None
    if (response.status_code, code) in EXTERNAL_FAILURES:
        return None
    raise AssertionError(f"server fault {response.status_code}: {response.content[:300]!r}")


@schemathesis.check
def error_shape(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Every 4xx and 5xx body is `{"detail", "error_code", "status_code"}`, consistent."""
    if response.status_code < 400:
        return None
    body = _json(response)
    problems = []
    if not isinstance(body, dict) or not body.keys() >= ERROR_KEYS:
        problems.append("not the error shape")
    else:
        if body["status_code"] != response.status_code:
            problems.append(f"status_code {body['status_code']!r} in the body")
        if not isinstance(body["detail"], str) or not body["detail"]:
            problems.append("detail is not a message")
        code = body["error_code"]
        if not isinstance(code, str) or not code or not code.replace("_", "").isupper():
            problems.append(f"error_code {code!r} is not an UPPER_CASE code")
    if problems:
        raise AssertionError(f"{'; '.join(problems)}: {response.content[:300]!r}")
    return None


# -- the platform and the user's real resources ----------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    with module_platform(request, tmp_path_factory, fake_llm, SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def mariadb(figures: Figures) -> Iterator[dict[str, Any] | None]:
    """An empty MariaDB database of its own, so fuzzed queries reach a real server. Without a
    MariaDB the fuzz still runs, on the other source types (None), unless CI requires one
    (AGENTFLOW_REQUIRE_MARIADB): then the test fails instead of silently fuzzing less."""
    reason = mariadb_unavailable_reason()
    if reason is not None:
        if MARIADB_REQUIRED:
            pytest.fail(f"AGENTFLOW_REQUIRE_MARIADB is set but {reason}")
        figures.record(SUITE, "mysql data sources fuzzed", f"no: {reason}")
        yield None
        return
    with temporary_mariadb_database() as info:
        yield info


def real_resources(
    client: httpx.Client, platform: Stack, mariadb: dict[str, Any] | None
) -> dict[str, list[Any]]:
    """The user's own resources, by path parameter name."""
    workflow = create_workflow(client, {**BRANCHING, "name": "被模糊测试的工作流"})
    changed = client.put(f"{W}/{workflow}", json={"description": "第二版", "comment": "v2"})
    assert changed.status_code == 200, changed.text
    started = client.post(f"{W}/{workflow}/execute", json={"input_data": {"text": "hello"}})
    assert started.status_code == 201, started.text
    execution = str(started.json()["id"])
    assert wait_finished(client, execution)["status"] == "completed"
    configs = [("api", {"base_url": f"{platform.base_url}/healthz"})]
    if mariadb is not None:
        configs.append(("mysql", mariadb))
    sources = []
    for source_type, config in configs:
        made = client.post(
            "/api/v1/data-sources", json={"name": "模糊", "type": source_type, "config": config}
        )
        assert made.status_code == 201, made.text
        sources.append(str(made.json()["id"]))
    return {
        "workflow_id": [workflow],
        "version": [1, 2],
        "execution_id": [execution],
        "data_source_id": sources,
        "aggregate_id": [workflow, execution, *sources],
    }


def write_config(path: Path, tokens: dict[str, str], resources: dict[str, list[Any]]) -> None:
    """schemathesis.toml: the user's token (the admin's for the admin-only history routes),
    our checks, and the real ids as dictionaries."""
    lines = [
        f"hooks = {json.dumps(__file__)}",
        f"headers = {{ Authorization = {json.dumps('Bearer ' + tokens['user'])} }}",
        "[parameters]",
    ]
    lines += [
        f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in resources
    ]
    for name, values in resources.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}"]
    lines += [
        "[[operations]]",
        'include-path-regex = "/history$"',
        f"headers = {{ Authorization = {json.dumps('Bearer ' + tokens['admin'])} }}",
        # Logging out ends the token it is sent with: a token of its own, not the user's.
        "[[operations]]",
        'include-path-regex = "/auth/logout$"',
        f"headers = {{ Authorization = {json.dumps('Bearer ' + tokens['logout'])} }}",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# -- the fuzz ---------------------------------------------------------------------------------

# schemathesis may take FUZZ_TIMEOUT_S (its phases' budgets, then the rest); the test, that and
# its platform's start.
FUZZ_TIMEOUT_S = BUDGET_S * 4 + 300


@pytest.mark.timeout(FUZZ_TIMEOUT_S + 120)
def test_the_whole_public_api_survives_fuzzing(
    platform: Stack,
    mariadb: dict[str, Any] | None,
    tmp_path: Path,
    figures: Figures,
) -> None:
    client, _ = platform.user_client()
    with client:
        resources = real_resources(client, platform, mariadb)
        spec = client.get("/openapi.json").json()
    leaving, _ = platform.user_client()
    with platform.admin_client() as admin, leaving:
        tokens = {
            "user": client.headers["Authorization"],
            "admin": admin.headers["Authorization"],
            "logout": leaving.headers["Authorization"],
        }
    tokens = {who: str(value).removeprefix("Bearer ") for who, value in tokens.items()}
    assert "x-unavailable-upstreams" not in spec["info"], spec["info"]
    config, report = tmp_path / "schemathesis.toml", tmp_path / "report.json"
    write_config(config, tokens, resources)
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config),
        "run", f"{platform.base_url}/openapi.json",
        "--checks", ",".join(CHECKS),
        "--max-examples", str(EXAMPLES),
        "--max-time", str(BUDGET_S),
        # One worker: hypothesis describes its filters with ast.parse, which CPython 3.11 may
        # fail from two threads at once ("AST constructor recursion depth mismatch").
        "--workers", "1",
        "--request-timeout", "60",
        "--continue-on-failure",
        "--report", "json", "--report-json-path", str(report),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S
    )
    output = run.stdout[-20_000:] + run.stderr[-5_000:]
    assert report.exists(), output
    result = json.loads(report.read_text(encoding="utf-8"))
    operations, cases = result["operations"], result["test_cases"]
    failures = sum(group["count"] for group in result["failures"])
    where = f"({'long' if LONG else 'short'}, {platform.env['AGENTFLOW_STORE']})"
    figures.record(SUITE, f"operations fuzzed {where}", operations["tested"])
    figures.record(SUITE, f"cases generated {where}", cases["generated"])
    figures.record(SUITE, f"failures found {where}", failures)

    assert not result["errors"], output
    assert operations["tested"] == operations["selected"] == operations["total"], output
    # Every operation of the document was reached (the WebSocket is not in it).
    assert operations["total"] == sum(
        1 for item in spec["paths"].values() for method in item if method != "parameters"
    )
    assert failures == 0, output
    assert run.returncode == 0, output


def test_nul_in_text_is_refused_before_it_reaches_a_store(platform: Stack) -> None:
    """PostgreSQL text cannot hold NUL: one in a workflow's name used to stop the list's
    projection for everyone, and one in a search answered 500."""
    client, _ = platform.user_client()
    with client:
        kept = create_workflow(client, {**BRANCHING, "name": "正常的工作流"})
        for body, path in [
            ({**BRANCHING, "name": "坏\u0000名字"}, W),
            ({"name": "坏", "type": "api", "config": {"base_url": "http://x.invalid/\u0000"}},
             "/api/v1/data-sources"),
            ({"input_data": {"text": "\u0000"}}, f"{W}/{kept}/execute"),
        ]:  # fmt: skip
            assert_error(client.post(path, json=body), 400, "INVALID_JSON")
        for path, params in [
            (W, {"search": "a\x00b"}),
            ("/api/v1/executions", {"search": "\x00"}),
            (f"{W}/templates/summarize-text/create", {"name": "坏\x00"}),
        ]:
            call = client.post if path.endswith("/create") else client.get
            assert_error(call(path, params=params), 422, "VALIDATION_ERROR")
        listed = client.get(W, params={"search": "正常"})
        assert listed.status_code == 200, listed.text
        assert [w["id"] for w in listed.json()] == [kept]
