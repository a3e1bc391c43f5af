"""Brute force through :8037: failed logins are bounded per account and per address."""

from __future__ import annotations

import httpx

from tests.integration.test_auth_journey import assert_error
from tests.support.stack import Stack

LIMITS = {
    "AGENTFLOW_LOGIN_MAX_FAILURES_PER_USER": "3",
    "AGENTFLOW_LOGIN_MAX_FAILURES_PER_ADDRESS": "6",
}


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/v1/auth/login", data={"username": username, "password": password})


def test_failed_logins_are_bounded_per_account_and_per_address(fresh_stack) -> None:
    stack: Stack = fresh_stack(LIMITS).start()
    alice, bob = stack.register(), stack.register()
    with stack.client() as client:
        for _ in range(3):
            assert_error(login(client, alice["username"], "wrong-password"), 401,
                         "INVALID_CREDENTIALS")  # fmt: skip
        held = login(client, alice["username"], alice["password"])  # even the right password
        body = assert_error(held, 429, "LOGIN_THROTTLED")
        assert int(held.headers["retry-after"]) > 0
        assert "access_token" not in body
        # Another account from the same address is not held: 3 failures of 6 so far.
        assert login(client, bob["username"], bob["password"]).status_code == 200
        for _ in range(3):  # names that do not exist count for the address too
            assert login(client, "nobody-here", "guess").status_code in (401, 429)
        assert_error(login(client, bob["username"], bob["password"]), 429, "LOGIN_THROTTLED")
