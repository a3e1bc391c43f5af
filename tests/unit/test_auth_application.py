"""The auth application on each event-store backend: same code, same behaviour."""

from __future__ import annotations

import threading
import uuid

import pytest
from eventsourcing.persistence import IntegrityError
from pydantic import SecretStr

from services.auth.application import (
    AdminAccountMismatch,
    AuthApplication,
    EmailTaken,
    InvalidCredentials,
    UsernameTaken,
    UserNotFound,
)
from services.auth.domain import User, UsernameIndex
from services.auth.integration import to_integration_event
from services.auth.main import bootstrap_admin
from services.auth.passwords import HashingBusy, PasswordHashing, WeakPassword
from services.auth.settings import AuthSettings

PASSWORD = "tr0ub4dor3"


def test_register_then_authenticate(auth_app: AuthApplication) -> None:
    user = auth_app.register("Alice", "Alice@Example.com", "wonderland42")
    assert user.username == "Alice"
    assert user.email == "alice@example.com"
    assert user.role == "user"
    assert auth_app.authenticate("alice", "wonderland42").id == user.id
    assert auth_app.authenticate("ALICE@example.com", "wonderland42").id == user.id
    assert auth_app.get_user(user.id) == user


def test_wrong_password_and_unknown_user(auth_app: AuthApplication) -> None:
    auth_app.register("bob", "bob@example.com", "builder123")
    with pytest.raises(InvalidCredentials):
        auth_app.authenticate("bob", "builder124")
    with pytest.raises(InvalidCredentials):
        auth_app.authenticate("nobody", "builder123")
    with pytest.raises(UserNotFound):
        auth_app.get_user(uuid.uuid4())


def test_names_and_emails_are_unique(auth_app: AuthApplication) -> None:
    auth_app.register("carol", "carol@example.com", "tr0ub4dor3")
    with pytest.raises(UsernameTaken):
        auth_app.register("CAROL", "other@example.com", "tr0ub4dor3")
    with pytest.raises(EmailTaken):
        auth_app.register("carol2", "Carol@Example.com", "tr0ub4dor3")


def test_the_store_itself_rejects_a_second_claim(auth_app: AuthApplication) -> None:
    """Even bypassing the friendly pre-check, the derived id makes the store refuse."""
    auth_app.register("dave", "dave@example.com", "tr0ub4dor3")
    with pytest.raises(IntegrityError):
        auth_app.save(UsernameIndex("DAVE", uuid.uuid4()))


def test_concurrent_registrations_admit_one(auth_app: AuthApplication) -> None:
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            auth_app.register("erin", f"erin{i}@example.com", "tr0ub4dor3")
            results.append("ok")
        except UsernameTaken:
            results.append("taken")

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["ok"] + ["taken"] * 5


@pytest.mark.parametrize(
    "password", ["short1", "lettersonly", "123456789", "password1", "frank2024frank"]
)
def test_weak_passwords(auth_app: AuthApplication, password: str) -> None:
    with pytest.raises(WeakPassword):
        auth_app.register("frank", "frank@example.com", password)


def test_ensure_admin_creates_then_promotes(auth_app: AuthApplication) -> None:
    admin = auth_app.ensure_admin("root", "root@example.com", "tr0ub4dor3")
    assert admin.role == "admin"
    again = auth_app.ensure_admin("root", "root@example.com", "ignored-here-1")
    assert again.id == admin.id
    user = auth_app.register("grace", "grace@example.com", "tr0ub4dor3")
    promoted = auth_app.ensure_admin("grace", "grace@example.com", "tr0ub4dor3")
    assert (promoted.id, promoted.role) == (user.id, "admin")
    assert auth_app.authenticate("grace", "tr0ub4dor3").role == "admin"


@pytest.mark.parametrize(
    ("email", "password"),
    [("mallory@example.com", "0wn3d-the-name"), ("admin@example.com", "0wn3d-the-name"),
     ("mallory@example.com", "operators-pw-1")],
)  # fmt: skip
def test_a_registered_name_is_not_made_admin_with_other_credentials(
    auth_app: AuthApplication, email: str, password: str
) -> None:
    """Registration is open: whoever registers the bootstrap admin's name first must not
    become admin when the operator's email or password is not that account's."""
    squatter = auth_app.register("admin", email, password)
    with pytest.raises(AdminAccountMismatch) as refused:
        auth_app.ensure_admin("admin", "admin@example.com", "operators-pw-1")
    assert refused.value.status_code == 409
    assert auth_app.get_user(squatter.id).role == "user"
    # Only an explicit --promote makes it admin, and its password stays its own.
    promoted = auth_app.ensure_admin("admin", "admin@example.com", "operators-pw-1", promote=True)
    assert (promoted.id, promoted.role) == (squatter.id, "admin")
    assert auth_app.authenticate("admin", password).id == squatter.id


def test_logout_revocations_are_stored_once_and_published(auth_app: AuthApplication) -> None:
    user = auth_app.register("judy", "judy@example.com", PASSWORD)
    auth_app.revoke_token("jti-1", user.id, 2_000_000_000.0)
    auth_app.revoke_token("jti-1", user.id, 2_000_000_000.0)  # again: no second record
    published = [
        e
        for e in (
            to_integration_event(auth_app.mapper.to_domain_event(n))
            for n in auth_app.recorder.select_notifications(1, 100)
        )
        if e is not None and e.type == "TokenRevoked"
    ]
    assert [e.data for e in published] == [
        {"token_id": "jti-1", "user_id": str(user.id), "expires_at": 2_000_000_000.0}
    ]


def test_state_is_rebuilt_from_events_by_a_new_process(auth_settings: AuthSettings) -> None:
    first = AuthApplication(auth_settings)
    user = first.register("heidi", "heidi@example.com", "tr0ub4dor3")
    first.ensure_admin("heidi", "heidi@example.com", "tr0ub4dor3")
    first.close()
    second = AuthApplication(auth_settings)
    try:
        assert second.authenticate("heidi", "tr0ub4dor3").role == "admin"
        assert second.get_user(user.id).created_at == user.created_at
    finally:
        second.close()


def test_published_events_never_carry_the_password_hash(auth_app: AuthApplication) -> None:
    auth_app.register("ivan", "ivan@example.com", "tr0ub4dor3")
    auth_app.ensure_admin("ivan", "ivan@example.com", "x", promote=True)
    notifications = auth_app.recorder.select_notifications(1, 100)
    published = [to_integration_event(auth_app.mapper.to_domain_event(n)) for n in notifications]
    kinds = [event.type for event in published if event is not None]
    assert kinds == ["UserRegistered", "UserRoleChanged"]
    assert len(published) == 4  # plus the two uniqueness claims, kept internal
    for event in published:
        if event is not None:
            assert "password_hash" not in event.data
            assert "argon2" not in str(event.data)


def test_conflicting_write_is_retried_from_fresh_state(auth_settings: AuthSettings) -> None:
    """Two writers change one user at once: neither change is lost or applied over the other."""
    mine, theirs = AuthApplication(auth_settings), AuthApplication(auth_settings)
    try:
        user = mine.register("judy", "judy@example.com", PASSWORD)
        attempts: list[int] = []

        def change_password() -> int:
            stale: User = mine.repository.get(user.id)
            if not attempts:  # another process promotes the user after we read it
                other: User = theirs.repository.get(user.id)
                other.change_role("admin")
                theirs.save(other)
            attempts.append(1)
            stale.change_password("new-hash")
            mine.save(stale)
            return int(stale.version)

        assert mine.retry_on_conflict(change_password) == 3
        assert len(attempts) == 2
        final: User = theirs.repository.get(user.id)
        assert (final.role, final.password_hash) == ("admin", "new-hash")
    finally:
        mine.close()
        theirs.close()


def test_a_conflict_that_never_clears_is_raised(auth_app: AuthApplication) -> None:
    auth_app.register("kim", "kim@example.com", PASSWORD)

    def always_stale() -> None:
        auth_app.save(UsernameIndex("kim", uuid.uuid4()))

    with pytest.raises(IntegrityError):
        auth_app.retry_on_conflict(always_stale, attempts=2)


def test_bootstrap_admin_does_not_promote_a_squatter(
    auth_settings: AuthSettings, auth_app: AuthApplication, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator's bootstrap admin name was registered first by someone else: the service
    starts, logs why, and the squatter stays a user; the explicit setting promotes it."""
    squatter = auth_app.register("root", "squatter@example.com", "squat-2026-pw")
    settings = auth_settings.model_copy(
        update={
            "bootstrap_admin_username": "root",
            "bootstrap_admin_email": "root@example.com",
            "bootstrap_admin_password": SecretStr("operators-pw-1"),
        }
    )
    bootstrap_admin(auth_app, settings)
    assert auth_app.get_user(squatter.id).role == "user"
    assert "NOT made" in caplog.text
    assert "operators-pw-1" not in caplog.text
    bootstrap_admin(auth_app, settings.model_copy(update={"bootstrap_admin_promote": True}))
    assert auth_app.get_user(squatter.id).role == "admin"


def test_hashing_is_bounded_and_a_long_wait_answers_busy(auth_settings: AuthSettings) -> None:
    """A burst of registrations queues for the hashing slots instead of running 64 MiB argon2
    hashes without bound; one that cannot get a slot in time answers 503 with Retry-After."""
    settings = auth_settings.model_copy(update={"max_concurrent_hashes": 2, "hash_wait_s": 0.2})
    hashing = PasswordHashing(settings)
    with hashing._slot(), hashing._slot():  # two hashes running
        with pytest.raises(HashingBusy) as busy:
            hashing.hash("pw-123456")
        assert busy.value.status_code == 503
        assert busy.value.headers["Retry-After"] == "1"
        with pytest.raises(HashingBusy):
            hashing.verify(None, "pw-123456")  # logins wait for a slot as well
    assert hashing.verify(hashing.hash("pw-123456"), "pw-123456")  # slots free again
