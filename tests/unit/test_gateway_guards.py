"""The gateway's guards, without a platform: which paths it forwards at all, which execution
ids may become part of a NATS subject, and the per-user count of open sockets.
(End to end, over raw HTTP and real sockets: tests/security/test_review_gateway.py.)"""

from __future__ import annotations

import uuid
from urllib.parse import unquote

import pytest

from services.gateway.live import canonical_execution_id
from services.gateway.paths import UnsafePath, check_path
from services.gateway.socket_quota import SocketQuota, TooManySockets


def _decoded(raw: str) -> str:
    """What uvicorn gives as `path`: the raw path percent-decoded once."""
    return unquote(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "/api/v1/data-sources/../../../metrics",
        "/api/v1/data-sources/./x",
        "/api/v1/data-sources/%2e%2e/%2e%2e/%2e%2e/metrics",
        "/api/v1/data-sources/%2E%2E/%2E%2E/%2E%2E/metrics",
        "/api/v1/data-sources/.%2e/.%2e/.%2e/metrics",
        "/api/v1/data-sources/..%2F..%2F..%2Fmetrics",
        "/api/v1/data-sources/..%2f..%2f..%2fmetrics",
        "/api/v1/data-sources/..%5C..%5C..%5Cmetrics",
        "/api/v1/data-sources/..\\..\\metrics",
        "/api/v1/data-sources/..;/..;/..;/metrics",
        "/api/v1/data-sources/.;x/metrics",
        "/api/v1/data-sources/%252e%252e/%252e%252e/metrics",
        "/api/v1/data-sources/..%252F..%252Fmetrics",
        "/api/v1/workflows/x/execute/../../../../metrics",
    ],
)
def test_dot_segments_and_encoded_separators_are_refused(raw: str) -> None:
    with pytest.raises(UnsafePath) as refused:
        check_path(_decoded(raw), raw.encode("latin-1"))
    assert refused.value.status_code == 400
    assert refused.value.error_code == "INVALID_PATH"


@pytest.mark.parametrize(
    "raw",
    [
        "/api/v1/workflows",
        "/api/v1/workflows/",
        f"/api/v1/workflows/{uuid.uuid4()}/versions/2/rollback",
        "/api/v1/workflows/templates/text-summary/create",
        "/api/v1/data-sources/abc..def",  # dots inside a segment are a name, not a step
        "/api/v1/data-sources/...",
        "/api/v1/workflows/%E5%B7%A5%E4%BD%9C%E6%B5%81",  # encoded non-ASCII is fine
        "/api/v1/auth/login",
    ],
)
def test_ordinary_paths_pass(raw: str) -> None:
    check_path(_decoded(raw), raw.encode("latin-1"))


@pytest.mark.parametrize("bad", [">", "*", "a.b", "x y", "", "..", "a.>", "🙂"])
def test_an_id_that_is_not_a_uuid_names_no_execution(bad: str) -> None:
    assert canonical_execution_id(bad) is None


def test_an_execution_id_is_used_in_its_canonical_form() -> None:
    execution_id = uuid.uuid4()
    assert canonical_execution_id(str(execution_id).upper()) == str(execution_id)
    assert canonical_execution_id(execution_id.hex) == str(execution_id)


def test_sockets_are_counted_per_user_and_released() -> None:
    quota = SocketQuota(limit=2)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    quota.acquire(alice)
    quota.acquire(alice)
    with pytest.raises(TooManySockets) as refused:
        quota.acquire(alice)
    assert (refused.value.status_code, refused.value.error_code) == (429, "QUOTA_EXCEEDED")
    quota.acquire(bob)  # another user's sockets are theirs
    quota.release(alice)
    quota.acquire(alice)  # a closed socket frees its place
    assert quota.open_for(alice) == 2
    quota.release(alice)
    quota.release(alice)
    quota.release(bob)
    assert quota.open_for(alice) == quota.open_for(bob) == 0
