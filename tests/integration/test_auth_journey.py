"""A user registers, logs in and asks who they are, through the gateway on both backends."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import jwt
import pytest

from tests.support.events import wait_for_events
from tests.support.stack import Stack, new_user

ERROR_KEYS = {"detail", "error_code", "status_code"}


@pytest.fixture(scope="module")
def stack(shared_stack: Stack) -> Stack:
    """The session's platform: this module's tests add and read data of their own users only."""
    return shared_stack


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body.keys() >= ERROR_KEYS
    assert body["status_code"] == status
    assert body["error_code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


def test_register_login_me(stack: Stack) -> None:
    body = new_user()
    with stack.client() as client:
        created = client.post("/api/v1/auth/register", json=body)
        assert created.status_code == 201, created.text
        user = created.json()
        assert set(user) == {"id", "username", "email", "role", "created_at"}
        assert user["username"] == body["username"]
        assert user["email"] == body["email"]
        assert user["role"] == "user"
        uuid.UUID(user["id"])

        login = client.post(
            "/api/v1/auth/login", data={"username": body["username"], "password": body["password"]}
        )
        assert login.status_code == 200, login.text
        token = login.json()
        assert token["token_type"] == "bearer"
        claims = jwt.decode(token["access_token"], options={"verify_signature": False})
        assert {"sub", "role", "exp", "iat", "jti"} <= claims.keys()
        assert claims["sub"] == user["id"]

        me = client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert me.status_code == 200, me.text
        assert me.json() == {k: user[k] for k in ("id", "username", "email", "role")}


def test_login_by_email_and_case_insensitive_username(stack: Stack) -> None:
    user = stack.register(f"Mixed_{uuid.uuid4().hex[:6]}")
    assert stack.login(user["email"], user["password"])
    assert stack.login(user["username"].upper(), user["password"])


def test_duplicates_are_409_with_their_own_codes(stack: Stack) -> None:
    user = stack.register()
    with stack.client() as client:
        same_name = new_user(user["username"].upper())
        assert_error(client.post("/api/v1/auth/register", json=same_name), 409, "USERNAME_TAKEN")
        same_email = new_user(email=user["email"].upper())
        assert_error(client.post("/api/v1/auth/register", json=same_email), 409, "EMAIL_TAKEN")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"password": "short1"}, "WEAK_PASSWORD"),
        ({"password": "onlyletters"}, "WEAK_PASSWORD"),
        ({"password": "1234567890"}, "WEAK_PASSWORD"),
        ({"password": "password1"}, "WEAK_PASSWORD"),
        ({"email": "not-an-email"}, "VALIDATION_ERROR"),
        ({"username": "ab"}, "VALIDATION_ERROR"),
        ({"username": "has space"}, "VALIDATION_ERROR"),
        ({"username": "x" * 33}, "VALIDATION_ERROR"),
    ],
)
def test_bad_registrations_are_422(stack: Stack, change: dict[str, str], code: str) -> None:
    with stack.client() as client:
        response = client.post("/api/v1/auth/register", json={**new_user(), **change})
    assert_error(response, 422, code)


def test_password_containing_the_username_is_weak(stack: Stack) -> None:
    body = new_user("zhangsan")
    body["password"] = "zhangsan2024"
    with stack.client() as client:
        assert_error(client.post("/api/v1/auth/register", json=body), 422, "WEAK_PASSWORD")


def test_chinese_username_is_welcome(stack: Stack) -> None:
    name = f"张三{uuid.uuid4().hex[:4]}"
    user = stack.register(name, email=f"{uuid.uuid4().hex[:8]}@example.com")
    assert user["username"] == name
    assert stack.login(name, user["password"])


def test_missing_fields_and_bad_json_are_422(stack: Stack) -> None:
    with stack.client() as client:
        body = assert_error(client.post("/api/v1/auth/register", json={}), 422, "VALIDATION_ERROR")
        assert {tuple(e["loc"]) for e in body["errors"]} >= {
            ("body", "username"),
            ("body", "email"),
            ("body", "password"),
        }
        broken = client.post(
            "/api/v1/auth/register",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert_error(broken, 422, "VALIDATION_ERROR")
        assert_error(client.post("/api/v1/auth/login", data={}), 422, "VALIDATION_ERROR")


def test_wrong_password_and_unknown_user_look_the_same(stack: Stack) -> None:
    user = stack.register()
    with stack.client() as client:
        wrong = client.post(
            "/api/v1/auth/login", data={"username": user["username"], "password": "wrongpass1"}
        )
        unknown = client.post(
            "/api/v1/auth/login", data={"username": "nobody_" + user["username"], "password": "x"}
        )
    assert_error(wrong, 401, "INVALID_CREDENTIALS")
    assert_error(unknown, 401, "INVALID_CREDENTIALS")
    assert wrong.json() == unknown.json()


def _forge(claims: dict[str, Any], secret: str, alg: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=alg)


def _alg_none(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_bad_tokens_are_401(stack: Stack) -> None:
    user = stack.register()
    token = stack.login(user["username"], user["password"])
    now = int(time.time())
    good = jwt.decode(token, options={"verify_signature": False})
    expired = {**good, "iat": now - 7200, "exp": now - 3600}
    ghost = {**good, "sub": str(uuid.uuid4())}
    header, _payload, signature = token.split(".")
    tampered_payload = (
        base64.urlsafe_b64encode(json.dumps({**good, "role": "admin"}).encode())
        .rstrip(b"=")
        .decode()
    )
    cases = {
        "missing": None,
        "garbage": "not-a-jwt",
        "expired": _forge(expired, stack.jwt_secret),
        "other secret": _forge(good, "another-secret-of-sufficient-length-0123456789"),
        "alg none": _alg_none(good),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "unknown user": _forge(ghost, stack.jwt_secret),
    }
    with stack.client() as client:
        for name, bad in cases.items():
            headers = {"Authorization": f"Bearer {bad}"} if bad else {}
            response = client.get("/api/v1/auth/me", headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert response.json().keys() >= ERROR_KEYS, name
            assert response.headers.get("www-authenticate") == "Bearer", name
        # The same unknown-user token also fails at the auth service itself, behind the gateway.
        direct = client.get(
            stack.auth.base_url + "/api/v1/auth/me",
            headers={"Authorization": f"Bearer {cases['unknown user']}"},
        )
        assert direct.status_code == 401


def test_messages_follow_accept_language(stack: Stack) -> None:
    user = stack.register()
    with stack.client() as client:
        data = {"username": user["username"], "password": "wrongpass1"}
        chinese = client.post("/api/v1/auth/login", data=data)
        english = client.post(
            "/api/v1/auth/login", data=data, headers={"Accept-Language": "en-US,en;q=0.9"}
        )
    assert chinese.json()["detail"] == "用户名或密码错误"
    assert english.json()["detail"] == "Incorrect username or password"
    assert chinese.json()["error_code"] == english.json()["error_code"]


def test_concurrent_registrations_of_one_name_admit_exactly_one(stack: Stack) -> None:
    name = f"race_{uuid.uuid4().hex[:8]}"

    def attempt(i: int) -> int:
        with stack.client() as client:
            body = new_user(name, email=f"{name}_{i}@example.com")
            return client.post("/api/v1/auth/register", json=body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(8)))
    assert sorted(statuses) == [201] + [409] * 7


def test_registration_is_published_once_without_secrets(stack: Stack) -> None:
    user = stack.register()
    events = wait_for_events(stack.nats.url, f"events.user.{user['id']}.>")
    assert len(events) == 1
    event = events[0]
    assert event.subject == f"events.user.{user['id']}.UserRegistered"
    assert event.msg_id == f"{user['id']}:1"
    envelope = event.envelope
    assert envelope["type"] == "UserRegistered"
    assert envelope["source"] == "auth"
    assert envelope["aggregate_id"] == user["id"]
    assert envelope["version"] == 1
    assert envelope["envelope_version"] == 1
    assert envelope["data"] == {
        "user_id": user["id"],
        "username": user["username"],
        "email": user["email"],
        "role": "user",
    }
    raw = json.dumps(envelope)
    assert user["password"] not in raw
    assert "argon2" not in raw


def test_request_id_is_echoed_or_made(stack: Stack) -> None:
    with stack.client() as client:
        given = client.get("/api/v1/auth/me", headers={"X-Request-ID": "trace-me-123"})
        made = client.get("/api/v1/auth/me")
    assert given.headers["x-request-id"] == "trace-me-123"
    assert len(made.headers["x-request-id"]) >= 16
