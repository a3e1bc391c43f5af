"""Per-user limits of the data sources service (rates and the quota), and the copy of json
files from the old shared directory into their owners' directories."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from services.datasources.json_files import copy_into_owner_dirs
from services.datasources.limits import (
    DataSourceLimits,
    DataSourceQuotaExceeded,
    DataSourceRateLimited,
)
from services.datasources.settings import DataSourcesSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limits(clock: Clock, **settings: object) -> DataSourceLimits:
    values = {
        "environment": "development",
        "max_data_sources_per_user": 2,
        "max_data_source_tests_per_minute_per_user": 3,
        "max_data_source_queries_per_minute_per_user": 5,
        **settings,
    }
    return DataSourceLimits(DataSourcesSettings(**values), clock=clock)  # type: ignore[arg-type]


def test_tests_are_limited_per_user_with_retry_after() -> None:
    clock = Clock()
    limits = _limits(clock)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    for _ in range(3):
        limits.count_test(alice)
        clock.now += 1
    with pytest.raises(DataSourceRateLimited) as caught:
        limits.count_test(alice)
    error = caught.value
    assert (error.status_code, error.error_code) == (429, "DATA_SOURCE_RATE_LIMITED")
    assert error.headers["Retry-After"] == "57"  # the first test leaves the window in 57 s
    assert "3" in error.detail("en")
    assert "3" in error.detail("zh")
    limits.count_test(bob)  # another user is not affected
    for _ in range(5):
        limits.count_query(alice)  # queries have their own budget
    clock.now += 57
    limits.count_test(alice)


def test_the_quota_counts_live_sources() -> None:
    limits = _limits(Clock())
    user = uuid.uuid4()
    owned = [0]
    for _ in range(2):
        with limits.registering(user, lambda: owned[0]):
            owned[0] += 1
    with (
        pytest.raises(DataSourceQuotaExceeded) as caught,
        limits.registering(user, lambda: owned[0]),
    ):
        raise AssertionError("not reached")
    error = caught.value
    assert (error.status_code, error.error_code) == (429, "QUOTA_EXCEEDED")
    assert "2" in error.detail("en")
    owned[0] -= 1  # one deleted: room again
    with limits.registering(user, lambda: owned[0]):
        pass


def test_copy_json_files_into_owner_dirs(tmp_path: Path) -> None:
    alice, bob, carol = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    (tmp_path / "sales").mkdir()
    (tmp_path / "sales" / "2026.json").write_text("[1]", encoding="utf-8")
    (tmp_path / str(carol)).mkdir()
    (tmp_path / str(carol) / "mine.json").write_text("[3]", encoding="utf-8")
    report = copy_into_owner_dirs(
        tmp_path,
        [
            (alice, "sales/2026.json"),
            (bob, "sales/2026.json"),  # both could read it before: both keep it
            (carol, "mine.json"),  # already in place
            (alice, "gone.json"),
            (bob, f"{alice}/sales/2026.json"),  # a path into someone else's directory
        ],
    )
    assert (tmp_path / str(alice) / "sales" / "2026.json").read_text() == "[1]"
    assert (tmp_path / str(bob) / "sales" / "2026.json").read_text() == "[1]"
    assert len(report.copied) == 2
    assert report.present == 1
    assert report.missing == [tmp_path.resolve() / "gone.json"]
    assert report.refused == [f"{alice}/sales/2026.json"]
    assert (tmp_path / "sales" / "2026.json").exists()  # copied, not moved
    assert not (tmp_path / str(bob) / str(alice)).exists()
