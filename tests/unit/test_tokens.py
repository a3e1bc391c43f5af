from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from shared.security.revocations import TokenRevocations
from shared.security.tokens import InvalidToken, TokenService
from shared.settings import PlatformSettings

SECRET = "s" * 64


def service(**overrides: object) -> TokenService:
    return TokenService(PlatformSettings(jwt_secret=SECRET, **overrides))  # type: ignore[arg-type]


def test_round_trip_carries_user_and_role() -> None:
    user_id = uuid.uuid4()
    principal = service().verify(service().issue(user_id, "admin"))
    assert principal.user_id == user_id
    assert principal.is_admin
    claims = jwt.decode(
        service().issue(user_id, "user"), SECRET, algorithms=["HS256"], issuer="agentflow"
    )
    assert {"sub", "role", "exp", "iat", "jti", "iss"} <= claims.keys()


def test_each_token_has_its_own_id() -> None:
    user_id = uuid.uuid4()
    a, b = (
        service().verify(service().issue(user_id, "user")),
        service().verify(service().issue(user_id, "user")),
    )
    assert a.token_id != b.token_id


def test_expired_token_is_refused() -> None:
    old = datetime.now(UTC) - timedelta(days=3)
    token = service(jwt_ttl_minutes=60).issue(uuid.uuid4(), "user", now=old)
    with pytest.raises(InvalidToken):
        service().verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "user"},  # no sub
        {"sub": "not-a-uuid", "role": "user"},
        {"sub": str(uuid.uuid4()), "role": "superuser"},
        {"sub": str(uuid.uuid4())},  # no role
    ],
)
def test_malformed_claims_are_refused(claims: dict[str, str]) -> None:
    now = int(datetime.now(UTC).timestamp())
    full = {"iat": now, "exp": now + 600, "jti": "j", "iss": "agentflow", **claims}
    with pytest.raises(InvalidToken):
        service().verify(jwt.encode(full, SECRET, algorithm="HS256"))


def test_other_issuer_secret_or_algorithm_is_refused() -> None:
    user_id = uuid.uuid4()
    with pytest.raises(InvalidToken):
        service().verify(service(jwt_issuer="someone-else").issue(user_id, "user"))
    other = TokenService(PlatformSettings(jwt_secret="o" * 64))
    with pytest.raises(InvalidToken):
        service().verify(other.issue(user_id, "user"))
    with pytest.raises(InvalidToken):
        service().verify(service(jwt_algorithm="HS512").issue(user_id, "user"))


def test_unsigned_token_is_refused() -> None:
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "admin",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "iss": "agentflow",
    }
    unsigned = jwt.encode(claims, key="", algorithm="none")
    with pytest.raises(InvalidToken):
        service().verify(unsigned)


# -- revocation and the role at use ----------------------------------------------------------


def envelope(data: dict[str, object]) -> bytes:
    return json.dumps({"type": "x", "data": data}).encode()


def test_a_revoked_token_is_refused_and_others_are_not() -> None:
    tokens = service()
    user_id = uuid.uuid4()
    kept, ended = tokens.issue(user_id, "user"), tokens.issue(user_id, "user")
    principal = tokens.verify(ended)
    tokens.revocations.apply(
        "events.token.abc.TokenRevoked",
        envelope({"token_id": principal.token_id, "expires_at": principal.expires_at}),
    )
    with pytest.raises(InvalidToken):
        tokens.verify(ended)
    assert tokens.verify(kept).user_id == user_id


def test_a_demotion_takes_effect_on_tokens_issued_before_it() -> None:
    tokens = service()
    user_id = uuid.uuid4()
    token = tokens.issue(user_id, "admin")
    assert tokens.verify(token).is_admin
    tokens.revocations.apply(
        f"events.user.{user_id}.UserRoleChanged",
        envelope({"user_id": str(user_id), "role": "user"}),
    )
    assert not tokens.verify(token).is_admin
    other = uuid.uuid4()
    assert tokens.verify(tokens.issue(other, "admin")).is_admin  # only that user's role


def test_revocations_are_forgotten_when_the_token_expires() -> None:
    now = [1000.0]
    revocations = TokenRevocations(clock=lambda: now[0])
    revocations.revoke("gone-soon", 1010.0)
    revocations.revoke("already-expired", 999.0)
    assert revocations.is_revoked("gone-soon")
    assert not revocations.is_revoked("already-expired")
    now[0] = 2000.0
    revocations.revoke("new", 3000.0)  # pruning happens as entries are added
    assert not revocations.is_revoked("gone-soon")
    assert len(revocations) == 1


@pytest.mark.parametrize(
    "payload", [b"not json", b"{}", b'{"data": {"token_id": "x"}}', b'{"data": []}']
)
def test_unreadable_bus_messages_are_skipped(payload: bytes) -> None:
    revocations = TokenRevocations()
    revocations.apply("events.token.x.TokenRevoked", payload)
    revocations.apply("events.user.x.UserRoleChanged", payload)
    assert len(revocations) == 0


# -- a verified token's claims are kept until it expires -----------------------------------


def test_a_token_seen_before_is_taken_without_its_signature_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = service()
    user_id = uuid.uuid4()
    token = tokens.issue(user_id, "user")
    assert tokens.verify(token).user_id == user_id

    def checked_again(*_: object, **__: object) -> None:
        raise AssertionError("the signature was checked a second time")

    monkeypatch.setattr(jwt, "decode", checked_again)
    assert tokens.verify(token).user_id == user_id


def test_a_seen_token_expires_as_any_other(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = service()
    token = tokens.issue(uuid.uuid4(), "user", ttl=timedelta(seconds=60))
    tokens.verify(token)
    later = time.time() + 66  # past `exp` and its 5 s of leeway
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_a_seen_token_logged_out_or_demoted_counts_at_once() -> None:
    tokens = service()
    user_id = uuid.uuid4()
    token = tokens.issue(user_id, "admin")
    principal = tokens.verify(token)
    assert principal.is_admin
    tokens.revocations.role_changed(str(user_id), "user")
    assert not tokens.verify(token).is_admin
    tokens.revocations.revoke(principal.token_id, principal.expires_at)
    with pytest.raises(InvalidToken):
        tokens.verify(token)


def test_forged_tokens_are_refused_every_time() -> None:
    tokens = service()
    forged = tokens.issue(uuid.uuid4(), "admin")[:-2] + "xx"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            tokens.verify(forged)
