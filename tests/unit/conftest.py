"""Unit fixtures: service settings pointed at a fresh store of the chosen backend."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from services.auth.application import AuthApplication
from services.auth.settings import AuthSettings

TEST_SECRET = "unit-test-secret-" + "x" * 32


@pytest.fixture
def service_env(store: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The chosen store, and nothing from the machine's own AGENTFLOW_* settings or `.env`."""
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_"):
            monkeypatch.delenv(key)
    for key, value in store.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AGENTFLOW_ENV_FILE", "")


@pytest.fixture
def auth_settings(service_env: None) -> AuthSettings:
    return AuthSettings(
        environment="test", jwt_secret=TEST_SECRET, argon2_memory_kib=8192, argon2_time_cost=1
    )


@pytest.fixture
def auth_app(auth_settings: AuthSettings) -> Iterator[AuthApplication]:
    application = AuthApplication(auth_settings)
    yield application
    application.close()
