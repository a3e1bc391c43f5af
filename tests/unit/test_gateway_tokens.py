"""The gateway checks a token's signature once; expiry, logout and role changes still count
on every use (services/gateway/tokens.py)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from services.gateway.tokens import SeenTokens
from shared.security.tokens import InvalidToken, TokenService
from shared.settings import PlatformSettings


def seen_tokens(capacity: int = 16) -> SeenTokens:
    settings = PlatformSettings(jwt_secret="s" * 64)
    return SeenTokens(settings, capacity=capacity)


def test_a_token_seen_before_is_taken_without_its_signature_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checker = seen_tokens()
    user_id = uuid.uuid4()
    token = checker.issue(user_id, "user")
    assert checker.verify(token).user_id == user_id
    calls: list[str] = []

    def checked(_: Any, again: str) -> dict[str, object]:
        calls.append(again)
        return {}

    monkeypatch.setattr(TokenService, "decode", checked)  # a second check would show here
    assert checker.verify(token).user_id == user_id
    assert calls == []


def test_a_seen_token_expires_as_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    checker = seen_tokens()
    token = checker.issue(uuid.uuid4(), "user", ttl=timedelta(seconds=60))
    checker.verify(token)
    later = time.time() + 66  # past `exp` and its 5 s of leeway
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        checker.verify(token)


def test_a_seen_token_logged_out_or_demoted_counts_at_once() -> None:
    checker = seen_tokens()
    user_id = uuid.uuid4()
    token = checker.issue(user_id, "admin")
    principal = checker.verify(token)
    assert principal.is_admin
    checker.revocations.role_changed(str(user_id), "user")
    assert not checker.verify(token).is_admin
    checker.revocations.revoke(principal.token_id, principal.expires_at)
    with pytest.raises(InvalidToken):
        checker.verify(token)


def test_forged_tokens_are_refused_every_time() -> None:
    checker = seen_tokens()
    forged = checker.issue(uuid.uuid4(), "admin")[:-2] + "xx"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            checker.verify(forged)


def test_only_the_most_recent_tokens_are_kept() -> None:
    checker = seen_tokens(capacity=2)
    first, second, third = (checker.issue(uuid.uuid4(), "user") for _ in range(3))
    for token in (first, second, third):
        checker.verify(token)
    assert list(checker._seen) == [second, third]
