"""Crashes lose nothing: the store is the truth, and the relay delivers what it holds, once."""

from __future__ import annotations

import time

import httpx

from tests.support.events import wait_for_events
from tests.support.stack import Stack


def test_registration_survives_kill_9(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    user = stack.register()
    stack.auth.kill9()
    stack.auth.start()
    token = stack.login(user["username"], user["password"])
    with stack.client() as client:
        me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


def test_event_stored_while_nats_is_down_arrives_once_after_a_crash(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    before = stack.register()
    assert len(wait_for_events(stack.nats.url, f"events.user.{before['id']}.>")) == 1

    stack.nats.stop()
    # Registration does not depend on NATS: the event waits in the store's outbox.
    during = stack.register()
    # Still ready (ADR 0008); /diagnostics, checked every few seconds, names NATS.
    assert httpx.get(stack.auth.base_url + "/readyz").status_code == 200
    deadline = time.monotonic() + 20
    while (diagnostics := httpx.get(stack.auth.base_url + "/diagnostics")).status_code != 503:
        assert time.monotonic() < deadline, diagnostics.text
        time.sleep(0.1)
    assert diagnostics.json()["dependencies"] == {"store": "ok", "nats": "failing"}
    stack.auth.kill9()  # the stored event was never published

    stack.nats.start()
    stack.auth.start()
    stack.auth.wait_ready()

    arrived = wait_for_events(stack.nats.url, f"events.user.{during['id']}.>")
    assert [e.msg_id for e in arrived] == [f"{during['id']}:1"]
    # Give a wrongly repeated publish the time to show up, then count again.
    after = stack.register()
    wait_for_events(stack.nats.url, f"events.user.{after['id']}.>")
    for user in (before, during, after):
        events = wait_for_events(stack.nats.url, f"events.user.{user['id']}.>")
        assert len(events) == 1, user["username"]


def test_service_reconnects_after_nats_restarts(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    stack.nats.stop()
    stack.nats.start()
    stack.auth.wait_ready()
    user = stack.register()
    events = wait_for_events(stack.nats.url, f"events.user.{user['id']}.>")
    assert [e.envelope["type"] for e in events] == ["UserRegistered"]


def test_workflow_list_resumes_after_the_service_is_killed(fresh_stack) -> None:
    stack: Stack = fresh_stack().start()
    client, _ = stack.user_client()
    with client:
        body = {"name": "before", "nodes": [], "edges": []}
        first = client.post("/api/v1/workflows", json=body).json()
        stack.workflows.kill9()
        stack.workflows.start()
        stack.workflows.wait_ready()
        second = client.post("/api/v1/workflows", json={**body, "name": "after"}).json()
        listed = client.get(
            "/api/v1/workflows", params={"sort_by": "name", "sort_order": "asc"}
        ).json()
        assert [item["id"] for item in listed] == [second["id"], first["id"]]
        assert client.get(f"/api/v1/workflows/{first['id']}").json()["name"] == "before"
