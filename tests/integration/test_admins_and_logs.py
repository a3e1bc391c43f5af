"""Admins from settings and from the command line; logs that trace requests and hide secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from shared.security.grants import QueryGrants
from shared.settings import PlatformSettings
from tests.support.events import wait_for_events
from tests.support.processes import REPO_ROOT
from tests.support.stack import Stack

ADMIN_PASSWORD = "Adm1n-passphrase"


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def me(stack: Stack, token: str) -> dict[str, str]:
    with stack.client() as client:
        response = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def test_bootstrap_admin_from_settings(fresh_stack) -> None:
    stack: Stack = fresh_stack(
        {
            "AGENTFLOW_BOOTSTRAP_ADMIN_USERNAME": "root",
            "AGENTFLOW_BOOTSTRAP_ADMIN_EMAIL": "root@example.com",
            "AGENTFLOW_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
    ).start()
    assert me(stack, stack.login("root", ADMIN_PASSWORD))["role"] == "admin"
    # A restart finds the admin there already and changes nothing.
    stack.auth.stop()
    stack.auth.start()
    assert me(stack, stack.login("root", ADMIN_PASSWORD))["role"] == "admin"


def auth_cli(
    stack: Stack, *args: str, password: str = ADMIN_PASSWORD
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.auth.cli", *args],
        env={**stack.env, "AGENTFLOW_ADMIN_PASSWORD": password},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_admin_from_the_command_line_while_the_service_runs(stack: Stack) -> None:
    user = stack.register()
    name = f"ops_{uuid.uuid4().hex[:6]}"
    result = auth_cli(stack, "create-admin", "--username", name, "--email", f"{name}@example.com")
    assert result.returncode == 0, result.stderr
    assert ADMIN_PASSWORD not in result.stdout + result.stderr
    assert me(stack, stack.login(name, ADMIN_PASSWORD))["role"] == "admin"
    # An existing account whose password is not the one given is not made admin by the name
    # alone (whoever registered it first would be); --promote does it, keeping its password.
    promote = ("create-admin", "--username", user["username"], "--email", user["email"])
    refused = auth_cli(stack, *promote)
    assert refused.returncode == 1
    assert "ADMIN_ACCOUNT_MISMATCH" in refused.stderr
    assert me(stack, stack.login(user["username"], user["password"]))["role"] == "user"
    result = auth_cli(stack, *promote, "--promote")
    assert result.returncode == 0, result.stderr
    assert me(stack, stack.login(user["username"], user["password"]))["role"] == "admin"
    # Written by another process, the events still reach NATS through the service's relay.
    promoted = wait_for_events(stack.nats.url, f"events.user.{user['id']}.>", at_least=2)
    assert [e.envelope["type"] for e in promoted] == ["UserRegistered", "UserRoleChanged"]


def test_request_id_reaches_the_service_logs_and_secrets_do_not(fresh_stack) -> None:
    # Request lines are off by default (one line per run is what a run writes); an operator
    # who turns them on gets the request id in every process's line, and no secret.
    stack: Stack = fresh_stack({"AGENTFLOW_ACCESS_LOG": "true"}).start()
    request_id = f"trace-{uuid.uuid4().hex}"
    user = stack.register()
    with stack.client() as client:
        client.post(
            "/api/v1/auth/login",
            data={"username": user["username"], "password": user["password"]},
            headers={"X-Request-ID": request_id},
        )
    # Access lines are written just after the response is sent: give them a moment.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        gateway_log, auth_log = stack.gateway.logs(), stack.auth.logs()
        if request_id in gateway_log and request_id in auth_log:
            break
        time.sleep(0.1)
    assert request_id in gateway_log
    assert request_id in auth_log
    assert "POST /api/v1/auth/login 200" in auth_log
    for log in (gateway_log, auth_log, stack.nats.logs()):
        assert user["password"] not in log
        assert stack.jwt_secret not in log
        assert "$argon2" not in log


def test_cli_reports_a_weak_password_clearly(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.auth.cli", "create-admin",
         "--username", "weakling", "--email", "weak@example.com"],
        env={**stack.env, "AGENTFLOW_ADMIN_PASSWORD": "short"},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "WEAK_PASSWORD" in result.stderr
    assert os.linesep not in result.stderr.strip()


# -- token lifecycle: logout, and the role at use --------------------------------------------


def status_of(url: str, token: str) -> int:
    return httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def wait_for_status(url: str, token: str, expected: int, timeout: float = 15.0) -> int:
    """The status `url` answers once the bus has carried a change there (or the last one)."""
    deadline = time.monotonic() + timeout
    while (status := status_of(url, token)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return status


def test_logout_ends_that_token_everywhere_and_no_other(stack: Stack) -> None:
    user = stack.register()
    ended = stack.login(user["username"], user["password"])
    kept = stack.login(user["username"], user["password"])
    # Through the gateway, and straight at every service behind it (each verifies itself).
    urls = [
        f"{stack.base_url}/api/v1/auth/me",
        f"{stack.base_url}/api/v1/workflows",
        f"{stack.base_url}/api/v1/executions",
        f"{stack.base_url}/api/v1/data-sources",
        f"{stack.auth.base_url}/api/v1/auth/me",
        f"{stack.workflows.base_url}/api/v1/workflows",
        f"{stack.executor.base_url}/api/v1/executions",
        f"{stack.datasources.base_url}/api/v1/data-sources",
    ]
    assert [status_of(url, ended) for url in urls] == [200] * len(urls)
    with stack.client(headers={"Authorization": f"Bearer {ended}"}) as client:
        logout = client.post("/api/v1/auth/logout")
        assert logout.status_code == 204, logout.text
        # The auth service refuses it at once; the others once the event reaches them.
        again = client.post("/api/v1/auth/logout")
        assert again.status_code == 401
        assert again.json()["error_code"] == "INVALID_TOKEN"
    assert [wait_for_status(url, ended, 401) for url in urls] == [401] * len(urls)
    assert [status_of(url, kept) for url in urls] == [200] * len(urls)
    # A restarted service learns the revocation again from the stream.
    stack.workflows.stop()
    stack.workflows.start()
    assert wait_for_status(f"{stack.workflows.base_url}/api/v1/workflows", ended, 401) == 401
    assert status_of(f"{stack.workflows.base_url}/api/v1/workflows", kept) == 200


def test_a_demotion_applies_to_tokens_already_issued(stack: Stack) -> None:
    """The role is read from the user record at use, not from the token: the same token
    gains admin rights when its user is promoted and loses them when demoted."""
    user = stack.register()
    token = stack.login(user["username"], user["password"])
    with stack.client(headers={"Authorization": f"Bearer {token}"}) as client:
        made = client.post("/api/v1/workflows", json={"name": "h", "nodes": [], "edges": []})
        assert made.status_code == 201, made.text
    history = f"{stack.base_url}/api/v1/workflows/{made.json()['id']}/history"
    assert status_of(history, token) == 403
    for role, expected in (("admin", 200), ("user", 403)):
        result = auth_cli(stack, "set-role", "--username", user["username"], "--role", role)
        assert result.returncode == 0, result.stderr
        assert wait_for_status(history, token, expected) == expected
        assert me(stack, token)["role"] == role


def test_a_query_grant_runs_queries_and_nothing_else(stack: Stack) -> None:
    """What workers hold instead of the JWT secret: a grant good for one owner's queries,
    straight at the data sources service, and refused everywhere else."""
    client, user = stack.user_client()
    with client:
        made = client.post(
            "/api/v1/data-sources",
            json={"name": "名单", "type": "json", "config": {"data": {"people": [{"n": 1}]}}},
        )
        assert made.status_code == 201, made.text
    source = made.json()["id"]
    key = stack.env["AGENTFLOW_DATASOURCE_QUERY_KEY"]
    grants = QueryGrants(PlatformSettings(environment="test", datasource_query_key=key))
    grant = {"Authorization": f"Bearer {grants.issue(uuid.UUID(user['id']))}"}
    query = f"/api/v1/data-sources/{source}/query"
    direct = httpx.post(stack.datasources.base_url + query, json={"query": "people"},
                        headers=grant, timeout=10)  # fmt: skip
    assert direct.status_code == 200, direct.text
    assert direct.json()["data"] == [{"n": 1}]
    refused = [
        httpx.post(stack.base_url + query, json={"query": "people"}, headers=grant),
        httpx.get(f"{stack.datasources.base_url}/api/v1/data-sources", headers=grant),
        httpx.get(f"{stack.datasources.base_url}/api/v1/data-sources/{source}", headers=grant),
        httpx.get(f"{stack.workflows.base_url}/api/v1/workflows", headers=grant),
        httpx.get(f"{stack.auth.base_url}/api/v1/auth/me", headers=grant),
    ]
    assert [r.status_code for r in refused] == [401] * len(refused)
    # A grant for someone else's owner id reaches nothing of this user's.
    other = {"Authorization": f"Bearer {grants.issue(uuid.uuid4())}"}
    theirs = httpx.post(stack.datasources.base_url + query, json={"query": "people"},
                        headers=other, timeout=10)  # fmt: skip
    assert theirs.status_code == 404
    # Workers run without the JWT secret in their environment.
    assert all("AGENTFLOW_JWT_SECRET" not in w.env for w in stack.workers)
