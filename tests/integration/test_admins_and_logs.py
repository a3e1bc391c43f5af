"""Admins from settings and from the command line; logs that trace requests and hide secrets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from tests.support.events import wait_for_events
from tests.support.processes import REPO_ROOT
from tests.support.stack import Stack

ADMIN_PASSWORD = "Adm1n-passphrase"


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


def test_admin_from_the_command_line_while_the_service_runs(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    user = stack.register()
    name = f"ops_{uuid.uuid4().hex[:6]}"
    for username, email in ((name, f"{name}@example.com"), (user["username"], user["email"])):
        result = subprocess.run(
            [sys.executable, "-m", "services.auth.cli", "create-admin",
             "--username", username, "--email", email],
            env={**stack.env, "AGENTFLOW_ADMIN_PASSWORD": ADMIN_PASSWORD},
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert ADMIN_PASSWORD not in result.stdout + result.stderr
    assert me(stack, stack.login(name, ADMIN_PASSWORD))["role"] == "admin"
    # Promotion keeps the user's own password.
    assert me(stack, stack.login(user["username"], user["password"]))["role"] == "admin"
    # Written by another process, the events still reach NATS through the service's relay.
    promoted = wait_for_events(stack.nats.url, f"events.user.{user['id']}.>", at_least=2)
    assert [e.envelope["type"] for e in promoted] == ["UserRegistered", "UserRoleChanged"]


def test_request_id_reaches_the_service_logs_and_secrets_do_not(stack: Stack) -> None:
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


def test_cli_reports_a_weak_password_clearly(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    result = subprocess.run(
        [sys.executable, "-m", "services.auth.cli", "create-admin",
         "--username", "weakling", "--email", "weak@example.com"],
        env={**stack.env, "AGENTFLOW_ADMIN_PASSWORD": "short"},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "WEAK_PASSWORD" in result.stderr
    assert os.linesep not in result.stderr.strip()
