"""Secrets never leave the platform: one journey handles every secret the platform holds —
user passwords (right and wrong), the admin's password, the LLM API key, the JWT secret, the
data-source encryption key, data-source passwords, tokens and API keys — through successes
and failures; then every response body and header, every WebSocket message, every message
in the `EVENTS` stream, every log line of every process, every `/metrics` output, the
OpenAPI document (and, on SQLite, the store's files) are scanned for each secret in plain
text and in its obvious encodings (JSON, URL, base64, hex)."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
import string
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from websockets.sync.client import connect

from tests.integration.test_executions import E, W, create_workflow, edge, node, wait_finished
from tests.support.attack import SUITE_BACKENDS, SecretScanner
from tests.support.databases import require_mariadb, temporary_mariadb_database
from tests.support.events import read_events
from tests.support.fake_llm import FakeLLM
from tests.support.figures import Figures
from tests.support.http_servers import QuietHandler, serving
from tests.support.platform_fixtures import LLM_KEY, module_platform
from tests.support.processes import free_port
from tests.support.stack import ADMIN, Stack, new_user

D = "/api/v1/data-sources"
letters = string.ascii_lowercase
L = "/api/v1/execution-logs/executions"
FERNET_KEY = Fernet.generate_key().decode("ascii")
SUITE = "security: secret scan"


def suite_of(platform: Stack) -> str:
    return f"{SUITE} ({platform.env['AGENTFLOW_STORE']})"


def secret(kind: str) -> str:
    """A value no test text could contain by chance (letters and digits: a valid password)."""
    return f"{kind}{secrets.token_hex(10)}Z9"


# The API the `api` data sources call: it checks each kind of credential, and never echoes.
API_TOKEN, API_PASSWORD = secret("tok"), secret("basic")
API_KEY_HEADER, API_KEY_QUERY = secret("hkey"), secret("qkey")


class _Api(QuietHandler):
    def do_GET(self) -> None:
        basic = base64.b64encode(f"svc:{API_PASSWORD}".encode()).decode()
        allowed = (
            self.headers.get("authorization") in (f"Bearer {API_TOKEN}", f"Basic {basic}")
            or self.headers.get("x-api-key") == API_KEY_HEADER
            or f"key={API_KEY_QUERY}" in self.path
        )
        self.reply(
            200 if allowed else 401, {"items": [{"sku": "a"}]} if allowed else {"error": "no"}
        )


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with serving(_Api) as url:
        yield url


@pytest.fixture(scope="module", params=SUITE_BACKENDS)
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeLLM
) -> Iterator[Stack]:
    env = {"AGENTFLOW_SECRETS_KEYS": FERNET_KEY}
    with module_platform(request, tmp_path_factory, fake_llm, env) as running:
        yield running


@dataclass
class Recorder:
    """Clients of the gateway that keep every response they receive (body and headers)."""

    stack: Stack
    responses: list[tuple[str, str]] = field(default_factory=list)

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        where = f"{request.method} {request.url.path} -> {response.status_code}"
        self.responses.append((where, f"{headers}\n\n{response.text}"))

    def client(self, token: str | None = None, base_url: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=base_url or self.stack.base_url,
            headers=headers,
            timeout=60,
            event_hooks={"response": [self._keep]},
        )

    def login(self, username: str, password: str) -> httpx.Response:
        with self.client() as anonymous:
            return anonymous.post(
                "/api/v1/auth/login", data={"username": username, "password": password}
            )

    def user(self, password: str) -> tuple[httpx.Client, dict[str, Any]]:
        body = new_user(password=password)
        with self.client() as anonymous:
            made = anonymous.post("/api/v1/auth/register", json=body)
        assert made.status_code == 201, made.text
        token = self.login(body["username"], password).json()["access_token"]
        return self.client(token), {**made.json(), **body}


def test_no_secret_reaches_any_response_event_log_or_metric(
    platform: Stack, api_url: str, figures: Figures
) -> None:
    require_mariadb()
    with temporary_mariadb_database() as shop:
        known = {
            "user password": secret("pw"),
            "second user password": secret("pw"),
            "mistyped password": secret("typo"),
            "weak password tried": "weak" + "".join(secrets.choice(letters) for _ in range(12)),
            "refused long password": secret("long") + "x" * 1100,
            "admin password": ADMIN["password"],
            "LLM API key": LLM_KEY,
            "JWT secret": platform.jwt_secret,
            "data source query key": platform.env["AGENTFLOW_DATASOURCE_QUERY_KEY"],
            "data-source encryption key": FERNET_KEY,
            "MariaDB password": str(shop["password"]),
            "wrong MariaDB password": secret("dbwrong"),
            "PostgreSQL password": secret("pgpw"),
            "API bearer token": API_TOKEN,
            "API basic password": API_PASSWORD,
            "API key (header)": API_KEY_HEADER,
            "API key (query)": API_KEY_QUERY,
            "secret in a refused config": secret("cfg"),
        }
        recorder = Recorder(platform)
        messages, canaries = journey(platform, recorder, known, shop, api_url)
    material = gather(platform, recorder, messages)
    scanner = SecretScanner(known)
    for kind, where, lines in material:
        scanner.scan_lines(kind, where, lines)
    assert scanner.leaks == [], "\n".join(scanner.leaks[:20])

    # Controls: the scan sees what it should (values that are no secret, such as the user's
    # name and a run's id, are found where they belong), and finds encoded forms.
    control = SecretScanner(canaries)
    for kind, where, lines in material:
        control.scan_lines(kind, where, lines)
    found_in = {leak.split(" in ", 1)[1].split(" ", 1)[0] for leak in control.leaks}
    assert {"responses", "events", "log"} <= found_in, control.leaks[:5]
    encoded = SecretScanner({"JWT secret": platform.jwt_secret})
    encoded.scan("control", "base64", base64.b64encode(platform.jwt_secret.encode()).decode())
    assert encoded.leaks
    for kind, count in scanner.scanned.items():
        figures.record(suite_of(platform), f"{kind} scanned", count)
    figures.record(suite_of(platform), "secrets (× encodings) looked for", len(known))
    figures.record(suite_of(platform), "leaks", len(scanner.leaks))


def journey(
    platform: Stack,
    recorder: Recorder,
    known: dict[str, str],
    shop: dict[str, Any],
    api_url: str,
) -> tuple[list[str], dict[str, str]]:
    """Every secret handled, in successes and failures. Returns the WebSocket messages and
    values that are no secrets but must show up in what is scanned (the scan's controls)."""
    with recorder.client() as anonymous:
        weak = {**new_user(), "password": known["weak password tried"]}
        assert anonymous.post("/api/v1/auth/register", json=weak).status_code == 422
        long = {**new_user(), "password": known["refused long password"]}
        assert anonymous.post("/api/v1/auth/register", json=long).status_code == 422
        no_email = {"username": "nomail_user", "password": known["user password"]}
        assert anonymous.post("/api/v1/auth/register", json=no_email).status_code == 422
    me, alice = recorder.user(known["user password"])
    canaries = {"a username": str(alice["username"])}
    other, _ = recorder.user(known["second user password"])
    assert recorder.login(alice["username"], known["mistyped password"]).status_code == 401
    assert recorder.login(alice["email"], known["user password"]).status_code == 200
    with recorder.client() as anonymous:
        again = anonymous.post(
            "/api/v1/auth/register",
            json={**new_user(alice["username"]), "password": known["user password"]},
        )
        assert again.status_code == 409
    admin_token = recorder.login(ADMIN["username"], ADMIN["password"]).json()["access_token"]

    with me, other, recorder.client(admin_token) as admin:
        sources = data_sources(me, known, shop, api_url)
        run_ids = runs(me, sources)
        for sid in sources.values():
            assert admin.get(f"{D}/{sid}/history").status_code == 200
            assert other.get(f"{D}/{sid}").status_code == 404
        for run_id in run_ids:
            assert admin.get(f"{E}/{run_id}/history").status_code == 200
            me.get(f"{L}/{run_id}")
            me.get(f"{L}/{run_id}/summary")
        me.get(D)
        me.get(E)
        me.get("/api/v1/auth/me")
        token = me.headers["Authorization"].split(" ", 1)[1]
    canaries["a run id"] = run_ids[0]
    return live_messages(platform, run_ids, token), canaries


def data_sources(
    me: httpx.Client, known: dict[str, str], shop: dict[str, Any], api_url: str
) -> dict[str, str]:
    """Sources holding every kind of secret; each tested, queried and, where it can, failing."""

    def register(name: str, kind: str, config: dict[str, Any]) -> str:
        made = me.post(D, json={"name": name, "type": kind, "config": config})
        assert made.status_code == 201, made.text
        return str(made.json()["id"])

    refused = me.post(
        D,
        json={
            "name": "坏",
            "type": "mysql",
            "config": {**shop, "passwd": known["secret in a refused config"]},
        },
    )
    assert refused.status_code == 422
    refused = me.post(
        D,
        json={
            "name": "坏",
            "type": "mysql",
            "config": {**shop, "port": known["secret in a refused config"]},
        },
    )
    assert refused.status_code == 422

    sources = {
        "mariadb": register("商品库", "mysql", shop),
        "postgres": register(
            "账本",
            "postgresql",
            {
                "host": "127.0.0.1",
                "port": 5432,
                "database": "postgres",
                "username": f"nobody_{uuid.uuid4().hex[:6]}",
                "password": known["PostgreSQL password"],
            },
        ),
        "unreachable": register("不在", "mysql", {**shop, "host": "no-such-host.invalid"}),
        "bearer": register(
            "目录",
            "api",
            {
                "base_url": api_url,
                "response_path": "items",
                "auth": {"type": "bearer", "token": API_TOKEN},
            },
        ),
        "basic": register(
            "基本",
            "api",
            {
                "base_url": api_url,
                "response_path": "items",
                "auth": {"type": "basic", "username": "svc", "password": API_PASSWORD},
            },
        ),
        "header key": register(
            "头",
            "api",
            {
                "base_url": api_url,
                "response_path": "items",
                "auth": {"type": "api_key", "name": "X-Api-Key", "value": API_KEY_HEADER},
            },
        ),
        "query key": register(
            "参",
            "api",
            {
                "base_url": api_url,
                "response_path": "items",
                "auth": {
                    "type": "api_key",
                    "name": "key",
                    "value": API_KEY_QUERY,
                    "location": "query",
                },
            },
        ),
        "nobody listens": register(
            "空",
            "api",
            {
                "base_url": f"http://127.0.0.1:{free_port()}",
                "timeout": 5,
                "auth": {
                    "type": "api_key",
                    "name": "key",
                    "value": API_KEY_QUERY,
                    "location": "query",
                },
            },
        ),
    }
    for name, sid in sources.items():
        tested = me.post(f"{D}/{sid}/test")
        assert tested.status_code == 200, tested.text
        expected = "failed" if name in ("postgres", "unreachable", "nobody listens") else "success"
        assert tested.json()["status"] == expected, (name, tested.json())
        sql = name in ("mariadb", "postgres", "unreachable")
        me.post(f"{D}/{sid}/query", json={"query": "SELECT 1 AS one" if sql else "/"})
        me.get(f"{D}/{sid}")
    mariadb = sources["mariadb"]
    assert (
        me.post(f"{D}/{mariadb}/query", json={"query": "SELECT VERSION() AS v"}).status_code == 200
    )
    assert me.post(f"{D}/{mariadb}/query", json={"query": "SELECT nope"}).status_code == 400
    # A wrong password, then the right one back: the failure must not tell either.
    wrong = {"config": {"password": known["wrong MariaDB password"]}}
    assert me.put(f"{D}/{mariadb}", json=wrong).status_code == 200
    assert me.post(f"{D}/{mariadb}/test").json()["error_kind"] == "auth"
    refused = me.post(f"{D}/{mariadb}/query", json={"query": "SELECT 1"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error_code"] == "DATA_SOURCE_AUTH_FAILED"
    right = {"config": {"password": shop["password"]}}
    assert me.put(f"{D}/{mariadb}", json=right).status_code == 200
    assert me.post(f"{D}/{mariadb}/test").json()["status"] == "success"
    wrong_token = {"config": {"auth": {"type": "bearer", "token": API_TOKEN + "x"}}}
    assert me.put(f"{D}/{sources['bearer']}", json=wrong_token).status_code == 200
    assert me.post(f"{D}/{sources['bearer']}/test").json()["error_kind"] == "auth"
    assert (
        me.put(
            f"{D}/{sources['bearer']}", json={"config": {"auth": {"token": API_TOKEN}}}
        ).status_code
        == 200
    )
    return sources


def runs(me: httpx.Client, sources: dict[str, str]) -> list[str]:
    """Workflows whose nodes use the sources and the model, succeeding and failing."""
    key = uuid.uuid4().hex[:8]
    query = node(
        "q",
        "transform",
        mode="data_source",
        data_source_id=sources["mariadb"],
        query="SELECT 1 AS one",
    )
    api = node("a", "transform", mode="data_source", data_source_id=sources["query key"], query="/")
    broken = node(
        "b",
        "transform",
        mode="data_source",
        data_source_id=sources["postgres"],
        query="SELECT 1",
        on_error="continue",
    )
    ask = node("m", "llm", prompt="你好 {q.data}")
    failing = node(
        "f",
        "llm",
        prompt=f"down [[fail=500x99 key={key}]]",
        on_error="continue",
        retry={"max_attempts": 1},
    )
    calls = '[[call=data_source_query:{"query": "/"}]]'
    agent = node(
        "g",
        "agent",
        prompt=f"查 {calls}",
        tools=[{"type": "data_source_query", "data_source_id": sources["header key"]}],
    )
    chain = ["start-1", "q", "a", "b", "m", "f", "g", "end-1"]
    flow = {
        "name": "用尽密钥",
        "nodes": [
            node("start-1", "start"),
            query,
            api,
            broken,
            ask,
            failing,
            agent,
            node("end-1", "end"),
        ],
        "edges": [edge(a, b) for a, b in itertools.pairwise(chain)],
    }
    unconfigured = {
        "name": "没配置的模型",
        "nodes": [
            node("start-1", "start"),
            node("o", "llm", provider="openai", model="gpt-4o", prompt="hi"),
            node("end-1", "end"),
        ],
        "edges": [edge("start-1", "o"), edge("o", "end-1")],
    }
    run_ids = []
    for body in (flow, unconfigured):
        started = me.post(f"{W}/{create_workflow(me, body)}/execute", json={"input_data": {}})
        assert started.status_code == 201, started.text
        run_ids.append(str(started.json()["id"]))
    records = [wait_finished(me, run_id, timeout=120) for run_id in run_ids]
    assert records[0]["status"] == "completed", records[0]
    # Both failures were carried past (on_error: continue), each logged as a failure.
    assert records[0]["nodes"]["b"]["output"] is None
    assert records[0]["nodes"]["f"]["output"] is None
    logs = me.get(f"{L}/{run_ids[0]}", params={"level": "error"}).json()["logs"]
    assert {"b", "f"} <= {line["node_id"] for line in logs}, logs
    assert records[1]["status"] == "failed", records[1]
    return run_ids


def live_messages(platform: Stack, run_ids: list[str], token: str) -> list[str]:
    base = platform.base_url.replace("http://", "ws://")
    received: list[str] = []
    for run_id in run_ids:
        with connect(f"{base}/api/v1/ws/executions/{run_id}?token={token}", open_timeout=15) as ws:
            while True:
                try:
                    message = ws.recv(timeout=15)
                except Exception:  # closed after the final message
                    break
                received.append(message if isinstance(message, str) else message.decode())
    assert received
    return received


def gather(
    platform: Stack, recorder: Recorder, messages: list[str]
) -> list[tuple[str, str, list[str]]]:
    """(kind, where, lines) of everything the platform showed or wrote."""
    with recorder.client() as anonymous:
        for path in ("/openapi.json", "/docs", "/redoc", "/healthz", "/readyz", "/diagnostics"):
            anonymous.get(path)
    found = [("responses", where, [text]) for where, text in recorder.responses]
    found.append(("WebSocket messages", "live", messages))

    events = asyncio.run(read_events(platform.nats.url, ">"))
    assert events
    for event in events:
        text = json.dumps(event.envelope, ensure_ascii=False)
        found.append(("events", event.subject, [f"{event.subject} {text}"]))

    for process in (*platform.services, *platform.workers):
        # The gateway serves its metrics on a port of their own, not its public one.
        base = (platform.gateway_metrics_url if process is platform.gateway
                else f"http://127.0.0.1:{process.port}")  # fmt: skip
        with httpx.Client(timeout=30) as plain:
            metrics = plain.get(f"{base}/metrics")
        assert metrics.status_code == 200, (process.name, metrics.text[:200])
        found.append(("metric lines", process.name, metrics.text.splitlines()))
    for process in (*platform.services, *platform.workers, platform.nats):
        found.append(("log lines", process.name, process.logs().splitlines()))

    data_dir = Path(platform.env["AGENTFLOW_DATA_DIR"])
    if platform.env.get("AGENTFLOW_STORE") == "sqlite" and data_dir.exists():
        for stored in sorted(p for p in data_dir.rglob("*") if p.is_file()):
            text = stored.read_bytes().decode("latin-1")
            found.append(("store files (SQLite)", stored.name, [text]))
    return found
