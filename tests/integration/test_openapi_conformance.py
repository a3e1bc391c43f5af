"""What the OpenAPI document allows, the API accepts (issue 14, "schema accuracy").

A generated client or form knows only the document. For the six operations whose checks go
furthest beyond their field types (register, login, data source create, execution create,
workflow import, execute), schemathesis generates requests the gateway's merged
`/openapi.json` allows (positive data only) and sends them through :8037 as a signed-in
user. Each must be accepted, apart from the refusals no schema can rule out, which are named
below and only allowed when they truly apply:

- register: 409 for a username or email already taken; 422 `WEAK_PASSWORD` for a password
  that is one of the commonest or holds the username (the document states both rules);
- login: 401 `INVALID_CREDENTIALS` (the form allows any username; few exist);
- import: 422 `DUPLICATE_ID` when two nodes or two edges share an id (stated in the document);
- execution create and execute run a real, valid workflow of the user's (the document cannot
  know which ids exist: any other id is a 404).

A string holding NUL (`\\u0000`) is refused by every service before its route (400
`INVALID_JSON`, documented on every operation with a body); the generator leaves it out. What
a string of `format: jmespath` may be (a JMESPath expression) is a language, not a pattern:
the generator is given a few.

SQLite only, a few examples per operation: the fuzz suite (tests/security) covers the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.auth.passwords import WeakPassword, check_password_strength
from tests.integration.test_executions import create_workflow
from tests.support.fake_llm import FakeLLM
from tests.support.platform_fixtures import module_platform
from tests.support.stack import Stack

EXAMPLES = 12  # per operation
# Limits that would refuse a legitimate request for reasons of volume, lifted so that every
# case reaches the operation's own checks.
SETTINGS = {
    "AGENTFLOW_LOGIN_MAX_FAILURES_PER_USER": "100000",
    "AGENTFLOW_MAX_RUNNING_EXECUTIONS_PER_USER": "100000",
    "AGENTFLOW_MAX_EXECUTIONS_PER_MINUTE_PER_USER": "100000",
    "AGENTFLOW_MAX_DATA_SOURCES_PER_USER": "100000",
    "AGENTFLOW_MAX_WORKFLOWS_PER_USER": "100000",
}
# What schemathesis draws for `format: jmespath` (an api data source's `response_path`).
schemathesis.openapi.format(
    "jmespath", st.sampled_from(["items", "data.rows", "[*].name", "results[0].values", "@"])
)
RUNNABLE = {
    "name": "一致性",
    "nodes": [
        {"id": "start-1", "type": "start", "data": {}},
        {"id": "end-1", "type": "end", "data": {}},
    ],
    "edges": [{"id": "e1", "source": "start-1", "target": "end-1"}],
}


@dataclass
class Conformance:
    stack: Stack
    schema: OpenApiSchema
    token: str
    workflow_id: str


@pytest.fixture(scope="module", params=["sqlite"])
def conformance(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Conformance]:
    with module_platform(request, tmp_path_factory, fake_llm, SETTINGS) as stack:
        client, _ = stack.user_client()
        with client:
            workflow_id = create_workflow(client, RUNNABLE)
            document = client.get("/openapi.json").json()
            token = str(client.headers["Authorization"]).removeprefix("Bearer ")
        assert "x-unavailable-upstreams" not in document["info"], document["info"]
        schema = schemathesis.openapi.from_dict(document)
        schema.config.update(base_url=stack.base_url)
        schema.config.generation.update(
            modes=[GenerationMode.POSITIVE], allow_x00=False, max_examples=EXAMPLES
        )
        yield Conformance(stack, schema, token, workflow_id)


def _problem(response: httpx.Response | Any) -> str:
    return f"{response.status_code}: {response.text[:500]}"


def _error_code(response: Any) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


def _shown(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, default=str)[:1500]


def _duplicated(items: Any) -> bool:
    ids = (
        [item.get("id") for item in items if isinstance(item, dict)]
        if isinstance(items, list)
        else []
    )
    return len(ids) != len(set(ids))


def _legitimate_refusal(operation_id: str, body: Any, status: int, code: str | None) -> bool:
    """Whether a 4xx is one the document states but no schema can decide."""
    if operation_id == "register":
        if status == 409:
            return code in ("USERNAME_TAKEN", "EMAIL_TAKEN")
        if status == 422 and code == "WEAK_PASSWORD":
            try:
                check_password_strength(body["password"], body["username"])
            except WeakPassword:
                return True
        return False
    if operation_id == "login":
        return status == 401 and code == "INVALID_CREDENTIALS"
    if operation_id == "import_workflow":
        workflow = body.get("workflow", {}) if isinstance(body, dict) else {}
        duplicated = _duplicated(workflow.get("nodes")) or _duplicated(workflow.get("edges"))
        return status == 422 and code == "DUPLICATE_ID" and duplicated
    return False


OPERATIONS = [
    "register",
    "login",
    "create_data_source",
    "create_execution",
    "import_workflow",
    "execute_workflow",
]


@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_what_the_schema_allows_is_accepted(conformance: Conformance, operation_id: str) -> None:
    operation = conformance.schema.find_operation_by_id(operation_id)
    auth = {"Authorization": f"Bearer {conformance.token}"}
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def allowed_is_accepted(case: schemathesis.Case[Any]) -> None:
        # Which ids exist the document cannot know: run the user's own valid workflow.
        if operation_id == "execute_workflow":
            case.path_parameters = {
                **(case.path_parameters or {}),
                "workflow_id": conformance.workflow_id,
            }
        if operation_id == "create_execution" and isinstance(case.body, dict):
            case.body = {**case.body, "workflow_id": conformance.workflow_id}
        response = case.call(headers=auth, timeout=60)
        seen.append(response.status_code)
        if response.status_code < 300:
            return
        code = _error_code(response)
        assert response.status_code < 500, _problem(response)
        assert _legitimate_refusal(operation_id, case.body, response.status_code, code), (
            f"{case.method} {case.formatted_path} refused what its schema allows: "
            f"{response.status_code} {response.text[:600]}\nbody: {_shown(case.body)}"
        )

    allowed_is_accepted()
    assert seen, "no case was generated"
    if operation_id != "login":
        assert any(status < 300 for status in seen), seen
