"""Session-wide throwaway databases for the connector tests; each test makes its own tables.

Without a server the tests that need it are skipped, unless AGENTFLOW_REQUIRE_MARIADB /
AGENTFLOW_REQUIRE_POSTGRES is set: then they fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.databases import (
    require_mariadb,
    require_postgres,
    temporary_mariadb_database,
    temporary_postgres_source,
)


@pytest.fixture(scope="session")
def mariadb_source() -> Iterator[dict[str, Any]]:
    """host, port, database, username, password of a fresh MariaDB database and user."""
    require_mariadb()
    with temporary_mariadb_database() as info:
        yield info


@pytest.fixture(scope="session")
def postgres_source() -> Iterator[dict[str, Any]]:
    """host, port, database, username, password (None: trust) of a fresh PostgreSQL database."""
    require_postgres()
    with temporary_postgres_source() as info:
        yield info
