"""The OWASP API attack matrix, through the real platform: every public endpoint (one row
each, checked against `/openapi.json`) attacked as the issue lists — another user's resources
(BOLA), bad tokens, admin-only endpoints, mass assignment, brute-force logins, oversized
bodies, SSRF through `api` data sources and the agent's HTTP tool, and SQL that writes.

One platform per module (SQLite in `make test`, both stores in `make security`), configured
for the attacks: only 127.0.0.3 may be reached of the private addresses (the redirector
lives there), the gateway stands behind one trusted proxy so a test can choose its client
address with X-Forwarded-For, and bodies are capped at 256 KiB so 413 is cheap to reach.
"""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pymysql
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from services.gateway.routing import resolve
from tests.integration.test_auth_journey import ERROR_KEYS, assert_error
from tests.integration.test_executions import (
    BRANCHING,
    E,
    W,
    create_workflow,
    edge,
    node,
    wait_finished,
)
from tests.support.attack import (
    SUITE_BACKENDS,
    LocalServer,
    documented_operations,
    forged_tokens,
)
from tests.support.databases import (
    require_mariadb,
    require_postgres,
    temporary_mariadb_database,
    temporary_postgres_source,
)
from tests.support.fake_llm import FakeLLM
from tests.support.figures import Figures
from tests.support.platform_fixtures import module_platform
from tests.support.stack import Stack, new_user
from tests.support.tcp_relay import tcp_relay

D = "/api/v1/data-sources"
L = "/api/v1/execution-logs/executions"
MAX_BODY = 256 * 1024
PER_USER, PER_ADDRESS = 4, 6
ALLOWED_HOST = "127.0.0.3"  # the one private address the platform may reach
SETTINGS = {
    "AGENTFLOW_OUTBOUND_ALLOW_NETWORKS": f'["{ALLOWED_HOST}/32"]',
    "AGENTFLOW_TRUSTED_PROXY_HOPS": "1",
    "AGENTFLOW_LOGIN_MAX_FAILURES_PER_USER": str(PER_USER),
    "AGENTFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS": str(PER_ADDRESS),
    "AGENTFLOW_MAX_BODY_BYTES": str(MAX_BODY),
}
SUITE = "security: attack matrix"


def suite_of(platform: Stack) -> str:
    return f"{SUITE} ({platform.env['AGENTFLOW_STORE']})"


@pytest.fixture(scope="module", params=SUITE_BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    with module_platform(request, tmp_path_factory, fake_llm, SETTINGS) as running:
        yield running


# -- the matrix: one row per public operation ------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One operation. `access`: public, user (any signed-in user), owner (a resource of the
    caller's own) or admin. `body` and `params` may hold `{name}` placeholders; `owner_gets`
    is what its owner is answered (proof that the request itself is well-formed)."""

    method: str
    path: str
    access: str
    body: dict[str, Any] | None = None
    params: dict[str, str] = field(default_factory=dict)
    owner_gets: tuple[int, ...] = (200,)
    aggregate: str = ""  # history rows: which id fills {aggregate_id}
    form: bool = False


WF, EX, DS = f"{W}/{{workflow_id}}", f"{E}/{{execution_id}}", f"{D}/{{data_source_id}}"
TINY = {"name": "矩阵", "nodes": [node("start-1", "start")], "edges": []}
JSON_SOURCE = {"name": "名单", "type": "json", "config": {"data": {"people": [{"name": "王"}]}}}

ROWS: tuple[Row, ...] = (
    Row("POST", "/api/v1/auth/register", "public", new_user("matrix_row")),
    Row("POST", "/api/v1/auth/login", "public", {"username": "x", "password": "y"}, form=True),
    Row("GET", "/api/v1/auth/me", "user"),
    Row("POST", "/api/v1/auth/logout", "user", owner_gets=(204,)),
    Row("GET", W, "user"),
    Row("POST", W, "user", TINY),
    Row("POST", f"{W}/validate", "user", TINY),
    Row("GET", f"{W}/templates", "user"),
    Row("POST", f"{W}/templates/{{template_id}}/create", "user", params={"name": "模板"}),
    Row("POST", f"{W}/import", "user", {"workflow": {"format_version": 1, **TINY}}),
    Row("GET", E, "user"),
    Row("POST", E, "user", {"workflow_id": "{workflow_id}", "input_data": {"text": "x"}}),
    Row("GET", D, "user"),
    Row("POST", D, "user", JSON_SOURCE),
    Row("GET", WF, "owner"),
    Row("PUT", WF, "owner", {"name": "改名", "comment": "矩阵"}),
    Row("PUT", f"{WF}/status", "owner", {"status": "published"}),
    Row("GET", f"{WF}/export", "owner"),
    Row("GET", f"{WF}/versions", "owner"),
    Row("GET", f"{WF}/versions/{{version}}", "owner"),
    Row("POST", f"{WF}/versions/{{version}}/rollback", "owner", {"comment": "回滚"}),
    Row("POST", f"{WF}/execute", "owner", {"input_data": {"text": "x"}}, owner_gets=(201,)),
    Row("GET", EX, "owner"),
    Row("GET", f"{EX}/status", "owner"),
    Row("POST", f"{EX}/cancel", "owner", owner_gets=(409,)),  # finished: nothing to cancel
    Row("POST", f"{EX}/resume", "owner", owner_gets=(409,)),
    Row("GET", f"{L}/{{execution_id}}", "owner"),
    Row("GET", f"{L}/{{execution_id}}/summary", "owner"),
    Row("GET", DS, "owner"),
    Row("PUT", DS, "owner", {"name": "新名", "description": "矩阵"}),
    Row("POST", f"{DS}/test", "owner"),
    Row("POST", f"{DS}/query", "owner", {"query": "people"}),
    Row("DELETE", DS, "owner"),
    Row("DELETE", WF, "owner"),  # last: the owner's proof run deletes in this order
    Row("GET", f"{W}/{{aggregate_id}}/history", "admin", aggregate="workflow_id"),
    Row("GET", f"{E}/{{aggregate_id}}/history", "admin", aggregate="execution_id"),
    Row("GET", f"{D}/{{aggregate_id}}/history", "admin", aggregate="data_source_id"),
)
SIGNED_IN = [row for row in ROWS if row.access != "public"]
OWNED = [row for row in ROWS if row.access == "owner"]
ADMIN_ONLY = [row for row in ROWS if row.access == "admin"]


def fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value and "}" in value else value
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


def call(
    client: httpx.Client,
    row: Row,
    ids: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    values = {**ids, "aggregate_id": ids.get(row.aggregate, "")}
    path = row.path.format(**values)
    body = fill(row.body, values) if row.body is not None else None
    params = fill(row.params, values)
    if row.form:
        return client.request(row.method, path, data=body, params=params, headers=headers)
    return client.request(row.method, path, json=body, params=params, headers=headers)


def test_every_documented_operation_has_a_row(platform: Stack, figures: Figures) -> None:
    """A new endpoint in /openapi.json fails here until the matrix covers it."""
    with platform.client() as client:
        spec = client.get("/openapi.json").json()
    documented = documented_operations(spec)
    rows = {(row.method, row.path) for row in ROWS}
    assert documented - rows == set(), "endpoints without a row in the attack matrix"
    assert rows - documented == set(), "rows for endpoints that are not documented"
    figures.record(
        suite_of(platform), "public operations in the matrix", len(ROWS) + 1, "(+ the WebSocket)"
    )


# -- the resources attacked ----------------------------------------------------------------------


@dataclass
class Victim:
    client: httpx.Client
    user: dict[str, Any]
    ids: dict[str, str]

    def snapshot(self) -> dict[str, Any]:
        """Everything the owner can read of the resources, to compare before and after."""
        get = self.client.get
        ids = self.ids
        return {
            "workflow": get(f"{W}/{ids['workflow_id']}").json(),
            "versions": get(f"{W}/{ids['workflow_id']}/versions").json(),
            "execution": get(f"{E}/{ids['execution_id']}").json(),
            "logs": get(f"{L}/{ids['execution_id']}").json(),
            "executions": get(E, params={"workflow_id": ids["workflow_id"]}).json(),
            "data_source": get(f"{D}/{ids['data_source_id']}").json(),
        }


def make_victim(stack: Stack) -> Victim:
    client, user = stack.user_client()
    workflow_id = create_workflow(client, BRANCHING)
    client.put(f"{W}/{workflow_id}", json={"description": "第二版"}).raise_for_status()
    run = client.post(f"{W}/{workflow_id}/execute", json={"input_data": {"text": "hello"}})
    assert run.status_code == 201, run.text
    assert wait_finished(client, run.json()["id"], timeout=60)["status"] == "completed"
    source = client.post(D, json=JSON_SOURCE)
    assert source.status_code == 201, source.text
    template_id = client.get(f"{W}/templates").json()[0]["id"]
    ids = {
        "workflow_id": workflow_id,
        "version": "1",
        "execution_id": run.json()["id"],
        "data_source_id": source.json()["id"],
        "template_id": template_id,
    }
    return Victim(client, user, ids)


@pytest.fixture
def victim(platform: Stack) -> Iterator[Victim]:
    made = make_victim(platform)
    try:
        yield made
    finally:
        made.client.close()


# -- authentication: every signed-in operation, every kind of bad token -------------------------


def test_bad_tokens_are_401_everywhere(platform: Stack, victim: Victim, figures: Figures) -> None:
    """At the gateway and, behind it, at each service itself (defense in depth)."""
    token = victim.client.headers["Authorization"].split(" ", 1)[1]
    forged = forged_tokens(platform.jwt_secret, token)
    before = victim.snapshot()
    services = {s.name: s.base_url for s in platform.services}
    checked = 0
    with platform.client() as gateway:
        for row in SIGNED_IN:
            upstream = resolve(row.path.replace("{", "").replace("}", ""))
            assert upstream is not None
            assert not upstream.public
            with httpx.Client(base_url=services[upstream.upstream], timeout=30) as service:
                for kind, value in forged.items():
                    headers = {} if value is None else {"Authorization": value}
                    for client in (gateway, service):
                        response = call(client, row, victim.ids, headers)
                        assert response.status_code == 401, (kind, row, response.text)
                        body = response.json()
                        assert body.keys() >= ERROR_KEYS, body
                        assert body["status_code"] == 401, body
                        assert body["error_code"] in ("UNAUTHORIZED", "INVALID_TOKEN"), body
                        checked += 1
    # The live socket refuses them too, before anything is sent.
    for kind, value in forged.items():
        if value is not None and not value.startswith("Bearer"):
            continue  # the socket takes the token alone, in its query string
        raw = "" if value is None else value.partition(" ")[2]
        refused = socket_refusal(platform, victim.ids["execution_id"], raw)
        assert refused.status_code == 401, (kind, refused)
        assert refused.body.keys() >= ERROR_KEYS, refused
        checked += 1
    assert victim.snapshot() == before
    how = f"({len(forged)} kinds × {len(SIGNED_IN)} operations × gateway+service, + WebSocket)"
    figures.record(suite_of(platform), "bad-token requests refused with 401", checked, how)


@dataclass(frozen=True)
class Refusal:
    status_code: int
    body: dict[str, Any]


def socket_refusal(stack: Stack, execution_id: str, token: str) -> Refusal:
    """The HTTP answer refusing a WebSocket handshake (the socket must not open)."""
    base = stack.base_url.replace("http://", "ws://")
    query = f"?token={token}" if token else ""
    try:
        with connect(f"{base}/api/v1/ws/executions/{execution_id}{query}", open_timeout=15):
            pass
    except InvalidStatus as exc:
        text = exc.response.body.decode() if exc.response.body else "{}"
        return Refusal(exc.response.status_code, json.loads(text))
    raise AssertionError(f"the socket of {execution_id} opened")


# -- BOLA: another user's resources are 404, as if they did not exist -----------------------------


def test_another_users_resources_are_404_and_stay_unchanged(
    platform: Stack, victim: Victim, figures: Figures
) -> None:
    before = victim.snapshot()
    unknown = {**victim.ids, **{k: str(uuid.uuid4()) for k in victim.ids if k.endswith("_id")}}
    intruder, _ = platform.user_client()
    checked = 0
    with intruder:
        for row in OWNED:
            theirs = call(intruder, row, victim.ids)
            body = assert_error(theirs, 404, theirs.json().get("error_code", "?"))
            # Exactly what an id that does not exist gets: nothing tells the two apart.
            missing = call(intruder, row, unknown)
            assert (missing.status_code, missing.json()) == (404, body), row
            checked += 1
        # Resources named in a body, not the path.
        started = intruder.post(E, json={"workflow_id": victim.ids["workflow_id"]})
        assert_error(started, 404, "WORKFLOW_NOT_FOUND")
        # The live socket: refused the same way as an execution that does not exist.
        token = intruder.headers["Authorization"].split(" ", 1)[1]
        refused = socket_refusal(platform, victim.ids["execution_id"], token)
        assert refused == socket_refusal(platform, unknown["execution_id"], token)
        assert refused.status_code == 404, refused
        assert refused.body["error_code"] == "EXECUTION_NOT_FOUND", refused
        checked += 2
        # Lists show nothing of the victim's, even filtered by the victim's workflow.
        assert intruder.get(W).json() == []
        assert intruder.get(E).json() == []
        assert intruder.get(E, params={"workflow_id": victim.ids["workflow_id"]}).json() == []
        assert intruder.get(D).json() == []
    assert victim.snapshot() == before

    # The owner gets the expected answer from every row: the 404s were not malformed requests.
    for row in OWNED:
        response = call(victim.client, row, victim.ids)
        assert response.status_code in row.owner_gets, (row, response.text)
    figures.record(suite_of(platform), "BOLA attempts answered 404", checked, "(other user's ids)")


# -- admin-only operations ----------------------------------------------------------------------


def test_admin_only_operations_are_403_for_users(platform: Stack, victim: Victim) -> None:
    with platform.admin_client() as admin:
        for row in ADMIN_ONLY:
            assert call(admin, row, victim.ids).status_code == 200, row
            # Users, owners included, are refused whatever the id: 403 tells nothing.
            assert_error(call(victim.client, row, victim.ids), 403, "FORBIDDEN")
            unknown = {k: str(uuid.uuid4()) for k in victim.ids}
            assert_error(call(victim.client, row, unknown), 403, "FORBIDDEN")


# -- mass assignment ----------------------------------------------------------------------------

FORGED_FIELDS = {
    "id": "00000000-0000-4000-8000-000000000001",
    "owner_id": "00000000-0000-4000-8000-000000000002",
    "user_id": "00000000-0000-4000-8000-000000000002",
    "role": "admin",
    "is_admin": True,
    "version": 42,
    "workflow_version": 42,
    "status": "running",
    "created_at": "2000-01-01T00:00:00Z",
    "updated_at": "2000-01-01T00:00:00Z",
}


def test_mass_assignment_changes_nothing_it_should_not(platform: Stack, figures: Figures) -> None:
    checked = 0
    # Registering as an admin, with an id of one's choosing.
    account = new_user()
    body = {**account, **FORGED_FIELDS}
    with platform.client() as anonymous:
        made = anonymous.post("/api/v1/auth/register", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["role"] == "user"
    assert made.json()["id"] != FORGED_FIELDS["id"]
    token = platform.login(account["username"], account["password"])
    with platform.client(headers={"Authorization": f"Bearer {token}"}) as me:
        assert me.get("/api/v1/auth/me").json()["role"] == "user"
        assert_error(me.get(f"{W}/{uuid.uuid4()}/history"), 403, "FORBIDDEN")
        mine = made.json()["id"]
        other, stranger = platform.user_client()
        forged = {**FORGED_FIELDS, "owner_id": stranger["id"], "user_id": stranger["id"]}
        checked += 1

        def owned_by_me(found: dict[str, Any]) -> None:
            assert found["owner_id"] == mine, found
            assert found["id"] != forged["id"]
            assert not found["created_at"].startswith("2000"), found
            assert not found["updated_at"].startswith("2000"), found

        # Workflows: create, update, status, rollback, import, from a template.
        created = me.post(W, json={**BRANCHING, **forged}).json()
        owned_by_me(created)
        assert (created["version"], created["status"]) == (1, "draft")
        wid = created["id"]
        updated = me.put(f"{W}/{wid}", json={**forged, "name": "改"}).json()
        owned_by_me(updated)
        assert (updated["id"], updated["status"], updated["name"]) == (wid, "draft", "改")
        assert updated["version"] in (1, 2)
        published = me.put(f"{W}/{wid}/status", json={**forged, "status": "published"})
        assert published.status_code == 200, published.text
        owned_by_me(published.json())
        assert published.json()["version"] == updated["version"]
        rolled = me.post(f"{W}/{wid}/versions/1/rollback", json=forged)
        assert rolled.status_code == 200, rolled.text
        owned_by_me(rolled.json())
        assert rolled.json()["version"] == updated["version"] + 1
        exported = me.get(f"{W}/{wid}/export").json()["workflow"]
        imported = me.post(f"{W}/import", json={**forged, "workflow": {**exported, **forged}})
        assert imported.status_code == 201, imported.text
        owned_by_me(imported.json())
        assert imported.json()["id"] != wid
        assert (imported.json()["version"], imported.json()["status"]) == (1, "draft")
        template = me.get(f"{W}/templates").json()[0]["id"]
        from_template = me.post(f"{W}/templates/{template}/create", params=forged)
        assert from_template.status_code == 201, from_template.text
        owned_by_me(from_template.json())
        checked += 6

        # Executions: what a run is, and whose, is not the caller's to say.
        flow = create_workflow(me, BRANCHING)
        extras = {**forged, "output_data": {"shout": "forged"}, "error": None, "progress": 100}
        for started in (
            me.post(f"{W}/{flow}/execute", json={**extras, "input_data": {"text": "hello"}}),
            me.post(E, json={**extras, "workflow_id": flow, "input_data": {"text": "hello"}}),
        ):
            assert started.status_code == 201, started.text
            run = started.json()
            assert run["id"] != forged["id"]
            assert run["workflow_id"] == flow
            record = wait_finished(me, run["id"], timeout=60)
            assert (record["status"], record["workflow_version"]) == ("completed", 1), record
            assert record["output_data"] == {"shout": "hello!", "lang": "en"}
            checked += 1

        # Data sources.
        source = me.post(D, json={**JSON_SOURCE, **forged, "last_test": {"status": "success"}})
        assert source.status_code == 201, source.text
        owned_by_me(source.json())
        assert (source.json()["status"], source.json()["last_test"]) == ("inactive", None)
        sid = source.json()["id"]
        changed = me.put(f"{D}/{sid}", json={**forged, "type": "mysql", "name": "改名"})
        assert changed.status_code == 200, changed.text
        owned_by_me(changed.json())
        assert (changed.json()["id"], changed.json()["type"]) == (sid, "json")
        assert changed.json()["status"] == "inactive"
        checked += 2

        # And the stranger whose id was sent sees none of it.
        with other:
            assert other.get(W).json() == []
            assert other.get(D).json() == []
            assert other.get(E).json() == []
    figures.record(suite_of(platform), "mass-assignment bodies checked", checked)


# -- brute force --------------------------------------------------------------------------------


def login_from(client: httpx.Client, address: str, username: str, password: str) -> httpx.Response:
    return client.post(
        "/api/v1/auth/login",
        data={"username": username, "password": password},
        headers={"X-Forwarded-For": address},
    )


def test_brute_force_logins_are_held_per_account_and_per_address(
    platform: Stack, figures: Figures
) -> None:
    target, bystander = platform.register(), platform.register()
    with platform.client() as client:
        # Per account: PER_USER failures, from addresses spread around, hold the account...
        for i in range(PER_USER):
            wrong = login_from(client, f"203.0.113.{i + 1}", target["username"], "wrong-1234")
            assert_error(wrong, 401, "INVALID_CREDENTIALS")
        for login in (target["username"], target["username"].upper(), target["email"]):
            held = login_from(client, "203.0.113.200", login, target["password"])
            body = assert_error(held, 429, "LOGIN_THROTTLED")
            assert int(held.headers["retry-after"]) > 0
            assert "access_token" not in body
        # ...and nobody else.
        assert login_from(client, "203.0.113.1", bystander["username"], bystander["password"])\
            .status_code == 200  # fmt: skip

        # Per address: PER_ADDRESS failures from one address, over many names, hold it.
        for i in range(PER_ADDRESS):
            name = bystander["username"] if i == 0 else f"nobody_{uuid.uuid4().hex[:6]}"
            wrong = login_from(client, "198.51.100.7", name, "wrong-1234")
            assert_error(wrong, 401, "INVALID_CREDENTIALS")
        held = login_from(client, "198.51.100.7", bystander["username"], bystander["password"])
        assert_error(held, 429, "LOGIN_THROTTLED")
        # Prepending a made-up address does not help: the trusted proxy's entry counts.
        spoofed = "192.0.2.1, 198.51.100.7"
        held = login_from(client, spoofed, bystander["username"], bystander["password"])
        assert_error(held, 429, "LOGIN_THROTTLED")
        fine = login_from(client, "198.51.100.8", bystander["username"], bystander["password"])
        assert fine.status_code == 200, fine.text
    bound = f"{PER_USER} per account, {PER_ADDRESS} per address"
    figures.record(suite_of(platform), "failed logins before 429", bound)


# -- oversized bodies -------------------------------------------------------------------------


def test_oversized_bodies_are_413_before_any_service_sees_them(
    platform: Stack, victim: Victim, figures: Figures
) -> None:
    before = victim.snapshot()
    padding = "x" * (MAX_BODY + 1)
    checked = 0
    with platform.client(headers=dict(victim.client.headers)) as client:
        for row in ROWS:
            if row.method not in ("POST", "PUT"):
                continue
            values = {**victim.ids, "aggregate_id": ""}
            path = row.path.format(**values)
            big = {**(fill(row.body, values) or {}), "name": padding}
            assert_error(client.request(row.method, path, json=big), 413, "PAYLOAD_TOO_LARGE")
            # Streamed without a Content-Length: counted as it arrives.
            chunks = iter([b'{"name": "', padding.encode(), b'"}'])
            streamed = client.request(row.method, path, content=chunks,
                                      headers={"content-type": "application/json"})  # fmt: skip
            assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")
            checked += 2
        assert [w["id"] for w in client.get(W).json()] == [victim.ids["workflow_id"]]
        assert len(client.get(D).json()) == 1
    assert victim.snapshot() == before
    figures.record(suite_of(platform), "oversized bodies refused with 413", checked)


# -- SSRF -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LocalServer]]:
    """`private`: on 127.0.0.1, which no request may reach; `allowed`: on 127.0.0.3, the
    address the settings allow (and a redirector to the private one)."""
    private = LocalServer("127.0.0.1").start()
    allowed = LocalServer(ALLOWED_HOST).start()
    yield {"private": private, "allowed": allowed}
    private.stop()
    allowed.stop()


def private_targets(private: LocalServer, allowed: LocalServer) -> dict[str, str]:
    port = private.port
    targets = {
        "loopback": f"http://127.0.0.1:{port}/",
        "loopback, short form": f"http://127.1:{port}/",
        "loopback, decimal": f"http://2130706433:{port}/",
        "loopback, hex": f"http://0x7f000001:{port}/",
        "loopback, octal": f"http://017700000001:{port}/",
        "unspecified": f"http://0.0.0.0:{port}/",
        "IPv6 loopback": f"http://[::1]:{port}/",
        "IPv4-mapped IPv6": f"http://[::ffff:127.0.0.1]:{port}/",
        "NAT64 IPv6": f"http://[64:ff9b::7f00:1]:{port}/",
        "6to4 IPv6": f"http://[2002:7f00:1::]:{port}/",
        "DNS name: localhost": f"http://localhost:{port}/",
        "DNS name: LOCALHOST": f"http://LOCALHOST:{port}/",
        "cloud metadata": "http://169.254.169.254/latest/meta-data/",
        "cloud metadata, IPv6-mapped": "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "private 10/8": "http://10.0.0.1/",
        "private 172.16/12": "http://172.16.0.1/",
        "private 192.168/16": "http://192.168.1.1/",
        "shared 100.64/10": "http://100.64.0.1/",
        "IPv6 unique local": "http://[fd00::1]/",
        "IPv6 link-local": "http://[fe80::1]/",
        "redirect to loopback": f"{allowed.url}/redirect?to=http://127.0.0.1:{port}/",
        "redirect to metadata": f"{allowed.url}/redirect?to=http://169.254.169.254/",
        "redirect to localhost": f"{allowed.url}/redirect?to=http://localhost:{port}/",
    }
    host = socket.gethostname()
    try:
        if not all(info[4][0] != "" for info in socket.getaddrinfo(host, None)):
            raise OSError
        targets[f"DNS name: {host}"] = f"http://{host}:{port}/"  # often 127.0.1.1 or a LAN IP
    except OSError:
        pass
    return targets


def test_ssrf_through_api_data_sources_is_refused(
    platform: Stack, servers: dict[str, LocalServer], figures: Figures
) -> None:
    private, allowed = servers["private"], servers["allowed"]
    client, _ = platform.user_client()
    targets = private_targets(private, allowed)
    with client:
        # The address the settings allow is reached: the refusals below are the guard's.
        fine = client.post(
            D,
            json={
                "name": "允许",
                "type": "api",
                "config": {"base_url": allowed.url, "timeout": 10},
            },
        ).json()
        assert client.post(f"{D}/{fine['id']}/test").json()["status"] == "success"
        reached = client.post(f"{D}/{fine['id']}/query", json={"query": "/ok"})
        assert reached.json()["data"] == [{"reached": "/ok"}], reached.text
        for name, url in targets.items():
            made = client.post(
                D, json={"name": name, "type": "api", "config": {"base_url": url, "timeout": 10}}
            )
            assert made.status_code == 201, (name, made.text)
            sid = made.json()["id"]
            tested = client.post(f"{D}/{sid}/test").json()
            assert (tested["status"], tested["error_kind"]) == ("failed", "refused"), (name, tested)
            assert_error(client.post(f"{D}/{sid}/query", json={"query": ""}), 400,
                         "QUERY_REFUSED")  # fmt: skip
        for scheme in ("file:///etc/passwd", "gopher://127.0.0.1:25/", "ftp://10.0.0.1/"):
            bad = client.post(D, json={"name": "坏", "type": "api", "config": {"base_url": scheme}})
            assert_error(bad, 422, "INVALID_DATA_SOURCE_CONFIG")
    assert private.hits == []
    figures.record(
        suite_of(platform), "SSRF targets refused (api data source test + query)", len(targets)
    )


def test_ssrf_through_the_agents_http_tool_is_refused(
    platform: Stack, servers: dict[str, LocalServer], figures: Figures
) -> None:
    private, allowed = servers["private"], servers["allowed"]
    targets = private_targets(private, allowed)
    names = list(targets)
    urls = [f"{allowed.url}/agent-was-here", *targets.values()]
    client, _ = platform.user_client()
    runs: list[tuple[list[str], str]] = []
    with client:
        # An agent makes at most 19 calls (20 turns): one run per batch of targets.
        for start in range(0, len(urls), 15):
            batch = urls[start : start + 15]
            calls = " ".join(f"[[call=http_request:{json.dumps({'url': u})}]]" for u in batch)
            agent = node("agent-1", "agent", prompt=f"探测 {calls}", max_iterations=20,
                         tools=[{"type": "http_request", "timeout": 10}])  # fmt: skip
            flow = {
                "name": "探测",
                "nodes": [node("start-1", "start"), agent, node("end-1", "end")],
                "edges": [edge("start-1", "agent-1"), edge("agent-1", "end-1")],
            }
            run = client.post(f"{W}/{create_workflow(client, flow)}/execute")
            assert run.status_code == 201, run.text
            runs.append((batch, run.json()["id"]))
        trace: list[dict[str, Any]] = []
        for _, run_id in runs:
            record = wait_finished(client, run_id, timeout=120)
            assert record["status"] == "completed", record
            trace += record["output_data"]["tool_calls"]
    assert len(trace) == len(urls)
    assert trace[0]["ok"] is True, trace[0]  # the allowed address: proof the tool works
    assert json.loads(json.loads(trace[0]["result"])["body"]) == {"reached": "/agent-was-here"}
    for name, call_ in zip(names, trace[1:], strict=True):
        assert call_["ok"] is False, (name, call_)
        assert "not allowed" in call_["result"] or "不允许" in call_["result"], (name, call_)
    assert private.hits == []
    figures.record(
        suite_of(platform), "SSRF targets refused (agent http_request tool)", len(targets)
    )


# -- SQL through the query endpoint ---------------------------------------------------------------

WRITES = (
    "INSERT INTO items (id) VALUES (9)",
    "UPDATE items SET name = 'x'",
    "DELETE FROM items",
    "DROP TABLE items",
    "TRUNCATE TABLE items",
    "CREATE TABLE evil (id INT)",
    "ALTER TABLE items ADD COLUMN evil INT",
    "GRANT ALL ON items TO PUBLIC",
    "SELECT 1; DROP TABLE items",
    "SELECT 1; DELETE FROM items",
    "SELECT * FROM items; UPDATE items SET name = 'x'",
    "/* harmless */ DELETE FROM items",
    "WITH gone AS (SELECT 1) DELETE FROM items",
)
MYSQL_ONLY = (
    "/*!50000 DROP TABLE items */",
    "SELECT * FROM items INTO OUTFILE '/tmp/agentflow-evil'",
    "REPLACE INTO items (id) VALUES (1)",
    "LOAD DATA INFILE '/etc/passwd' INTO TABLE items",
    "SELECT 1;\nDROP TABLE items",
    "CALL mysql.rds_kill(1)",
    "SET GLOBAL max_connections = 1",
)
POSTGRES_ONLY = (
    "WITH gone AS (DELETE FROM items RETURNING *) SELECT * FROM gone",
    "COPY items TO '/tmp/agentflow-evil'",
    "SELECT 1; COMMIT; DROP TABLE items",
    "SELECT pg_terminate_backend(1); DROP TABLE items",
    "DO $$ BEGIN DELETE FROM items; END $$",
    "CREATE FUNCTION evil() RETURNS int AS 'SELECT 1' LANGUAGE sql",
    "SET ROLE postgres",
)


@contextmanager
def mariadb_items() -> Iterator[tuple[dict[str, Any], Callable[[], Any]]]:
    """A MariaDB table of two items; `state()` is its rows and the database's tables."""
    require_mariadb()
    with temporary_mariadb_database() as info:
        conn = pymysql.connect(
            host=info["host"], port=info["port"], user=info["username"],
            password=info["password"], database=info["database"], autocommit=True,
        )  # fmt: skip
        with conn:
            with conn.cursor() as cursor:
                cursor.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))")
                cursor.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")

            def state() -> Any:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT * FROM items ORDER BY id")
                    items = list(cursor.fetchall())
                    cursor.execute("SHOW TABLES")
                    return items, sorted(cursor.fetchall())

            yield info, state


@contextmanager
def postgres_items() -> Iterator[tuple[dict[str, Any], Callable[[], Any]]]:
    require_postgres()
    with temporary_postgres_source() as info, psycopg.connect(
        host=info["host"], port=info["port"], user=info["username"],
        dbname=info["database"], autocommit=True,
    ) as conn:  # fmt: skip
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items VALUES (1, 'a'), (2, 'b')")

        def state() -> Any:
            items = conn.execute("SELECT * FROM items ORDER BY id").fetchall()
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = 'public' ORDER BY 1"
            ).fetchall()
            routines = conn.execute(
                "SELECT count(*) FROM pg_proc WHERE proname = 'evil'"
            ).fetchall()
            return items, tables, routines

        yield info, state


@pytest.mark.parametrize(
    ("kind", "database", "statements"),
    [("mysql", mariadb_items, MYSQL_ONLY), ("postgresql", postgres_items, POSTGRES_ONLY)],
    ids=["mariadb", "postgresql"],
)
def test_sql_writes_and_stacked_statements_are_400(
    platform: Stack,
    kind: str,
    database: Callable[[], AbstractContextManager[tuple[dict[str, Any], Callable[[], Any]]]],
    statements: tuple[str, ...],
    figures: Figures,
) -> None:
    # The databases listen on 127.0.0.1, which this platform may not reach: through a relay on
    # the one allowed address (SQL sources obey the outbound policy too).
    with (
        database() as (info, state),
        tcp_relay(ALLOWED_HOST, info["host"], info["port"]) as (host, port),
    ):
        before = state()
        client, _ = platform.user_client()
        with client:
            config = {**info, "host": host, "port": port}
            made = client.post(D, json={"name": "库", "type": kind, "config": config})
            assert made.status_code == 201, made.text
            sid = made.json()["id"]
            ok = client.post(f"{D}/{sid}/query", json={"query": "SELECT * FROM items"})
            assert ok.json()["count"] == 2, ok.text
            for statement in (*WRITES, *statements):
                refused = client.post(f"{D}/{sid}/query", json={"query": statement})
                assert_error(refused, 400, "QUERY_REFUSED")
        assert state() == before
    figures.record(
        suite_of(platform), f"SQL writes refused with 400 ({kind})", len(WRITES) + len(statements)
    )
