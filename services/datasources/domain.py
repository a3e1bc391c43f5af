"""The `DataSource` aggregate: one registered database, HTTP API or JSON document.

Secrets (passwords, tokens, API keys) never enter an event in clear: the aggregate holds
the public part of the config and one encrypted token for the secrets, made by the
application with the service's key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from eventsourcing.domain import Aggregate, event

SourceType = Literal["mysql", "postgresql", "api", "json"]
SourceStatus = Literal["inactive", "active", "error"]


class DataSourceDeletedError(Exception):
    pass


class DataSource(Aggregate):
    @event("Registered")
    def __init__(
        self,
        owner_id: UUID,
        name: str,
        source_type: str,
        description: str,
        config: dict[str, Any],
        secrets: str | None,
        secret_names: list[str],
    ) -> None:
        self.owner_id = owner_id
        self.name = name
        self.source_type = source_type
        self.description = description
        self.config = config
        self.secrets = secrets
        self.secret_names = secret_names  # which secrets are set, so views can mask them
        self.config_version = 1
        self.status: SourceStatus = "inactive"  # not tested yet
        self.last_test: dict[str, Any] | None = None
        self.deleted = False

    def update(
        self,
        name: str | None,
        description: str | None,
        config: dict[str, Any] | None,
        secrets: str | None,
        secret_names: list[str],
    ) -> bool:
        """Record what changed; a config change makes earlier test results stale."""
        self.check_not_deleted()
        changes: dict[str, Any] = {}
        if name is not None and name != self.name:
            changes["name"] = name
        if description is not None and description != self.description:
            changes["description"] = description
        if config is not None and (config != self.config or secrets != self.secrets):
            changes["config"] = config
            changes["secrets"] = secrets
            changes["secret_names"] = secret_names
        if not changes:
            return False
        self._updated(changes)
        return True

    @event("Updated")
    def _updated(self, changes: dict[str, Any]) -> None:
        self.name = changes.get("name", self.name)
        self.description = changes.get("description", self.description)
        if "config" in changes:
            self.config = changes["config"]
            self.secrets = changes["secrets"]
            self.secret_names = changes["secret_names"]
            self.config_version += 1
            self.status = "inactive"
            self.last_test = None

    def record_test(self, ok: bool, message: str, kind: str | None, at: datetime) -> None:
        self.check_not_deleted()
        self._tested(ok, message, kind, at.isoformat())

    @event("Tested")
    def _tested(self, ok: bool, message: str, kind: str | None, at: str) -> None:
        self.status = "active" if ok else "error"
        self.last_test = {
            "status": "success" if ok else "failed",
            "message": message,
            "error_kind": kind,
            "tested_at": at,
        }

    def rotate_secrets(self, secrets: str) -> None:
        """Re-encrypted with the current key: the same secrets, a new token."""
        self.check_not_deleted()
        self._secrets_rotated(secrets)

    @event("SecretsRotated")
    def _secrets_rotated(self, secrets: str) -> None:
        self.secrets = secrets

    def delete(self) -> None:
        self.check_not_deleted()
        self._deleted()

    @event("Deleted")
    def _deleted(self) -> None:
        self.deleted = True

    def check_not_deleted(self) -> None:
        if self.deleted:
            raise DataSourceDeletedError(str(self.id))
