"""The data sources service's commands and queries over the `DataSource` aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from services.datasources import messages
from services.datasources.configs import (
    join_secrets,
    mask_secrets,
    merge_update,
    parse_config,
    split_secrets,
)
from services.datasources.domain import DataSource
from services.datasources.secrets import SecretBox, SecretsUnreadable
from services.datasources.settings import DataSourcesSettings
from shared.errors import NotFound, ServiceUnavailable, ValidationFailed
from shared.eventstore import EventSourcedApplication


class DataSourceNotFound(NotFound):
    default_code = "DATA_SOURCE_NOT_FOUND"
    default_message = messages.DATA_SOURCE_NOT_FOUND


class InvalidConfig(ValidationFailed):
    default_code = "INVALID_DATA_SOURCE_CONFIG"
    default_message = messages.INVALID_CONFIG


class SecretsUnavailable(ServiceUnavailable):
    default_code = "SECRETS_UNREADABLE"
    default_message = messages.SECRETS_UNREADABLE


@dataclass(frozen=True)
class Actor:
    user_id: UUID
    is_admin: bool = False


@dataclass(frozen=True)
class DataSourceView:
    id: UUID
    owner_id: UUID
    name: str
    type: str
    description: str
    config: dict[str, Any]  # secrets masked
    status: str
    last_test: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Connection:
    """What a connector is built from: the config with its secrets, in clear, in memory only."""

    source_id: UUID
    owner_id: UUID  # json sources read files from their owner's directory
    version: int
    source_type: str
    config: BaseModel


def config_problem(exc: PydanticValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])


class DataSourcesApplication(EventSourcedApplication):
    def __init__(self, settings: DataSourcesSettings, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self._box = SecretBox(settings.fernet_keys())

    # -- commands ----------------------------------------------------------------------------

    def register(
        self,
        actor: Actor,
        name: str,
        source_type: str,
        description: str,
        config: dict[str, Any],
    ) -> DataSourceView:
        public, secrets = split_secrets(source_type, self._normalised(source_type, config))
        source = DataSource(
            actor.user_id,
            name,
            source_type,
            description,
            public,
            self._box.encrypt(secrets) if secrets else None,
            sorted(secrets),
        )
        self.save(source)
        return self.view_of(source)

    def update(
        self,
        actor: Actor,
        source_id: UUID,
        name: str | None = None,
        description: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> DataSourceView:
        """A partial update: config keys not given keep their values, secrets included."""

        def change() -> DataSourceView:
            source = self._load(actor, source_id)
            token, names, public = source.secrets, source.secret_names, None
            if config is not None:
                current = self._secrets_of(source)
                merged, secrets = merge_update(source.source_type, source.config, current, config)
                full = self._normalised(source.source_type, join_secrets(merged, secrets))
                public, secrets = split_secrets(source.source_type, full)
                if secrets != current:  # Fernet tokens differ every time: compare in clear
                    token = self._box.encrypt(secrets) if secrets else None
                names = sorted(secrets)
            if source.update(name, description, public, token, names):
                self.save(source)
            return self.view_of(source)

        return self.retry_on_conflict(change)

    def delete(self, actor: Actor, source_id: UUID) -> None:
        def remove() -> None:
            source = self._load(actor, source_id)
            source.delete()
            self.save(source)

        self.retry_on_conflict(remove)

    def record_test(self, source_id: UUID, ok: bool, message: str, kind: str | None) -> None:
        def record() -> None:
            source = self._load(None, source_id)
            source.record_test(ok, message, kind, datetime.now(UTC))
            self.save(source)

        self.retry_on_conflict(record)

    def rotate_secrets(self, source_ids: list[UUID]) -> int:
        """Re-encrypt every source's secrets with the first key; returns how many changed."""
        rotated = 0
        for source_id in source_ids:
            try:
                source = self._load(None, source_id)
            except DataSourceNotFound:
                continue
            if source.secrets is None:
                continue
            token = self._box.rotate(source.secrets)
            if token != source.secrets:
                source.rotate_secrets(token)
                self.save(source)
                rotated += 1
        return rotated

    # -- queries -----------------------------------------------------------------------------

    def json_files(self, source_ids: list[UUID]) -> list[tuple[UUID, str]]:
        """(owner, file) of every live json source that names a file."""
        found: list[tuple[UUID, str]] = []
        for source_id in source_ids:
            try:
                source = self._load(None, source_id)
            except DataSourceNotFound:
                continue
            file = source.config.get("file")
            if source.source_type == "json" and isinstance(file, str) and file:
                found.append((source.owner_id, file))
        return found

    def get(self, actor: Actor, source_id: UUID) -> DataSourceView:
        return self.view_of(self._load(actor, source_id))

    def connection(self, actor: Actor, source_id: UUID) -> Connection:
        source = self._load(actor, source_id)
        full = join_secrets(source.config, self._secrets_of(source))
        return Connection(
            source.id,
            source.owner_id,
            source.config_version,
            source.source_type,
            parse_config(source.source_type, full),
        )

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _normalised(source_type: str, config: dict[str, Any]) -> dict[str, Any]:
        """The config as its model reads it (defaults filled), or 422 naming the problem."""
        try:
            model = parse_config(source_type, config)
        except PydanticValidationError as exc:
            raise InvalidConfig(detail=config_problem(exc)) from exc
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped

    def _secrets_of(self, source: DataSource) -> dict[str, str]:
        if source.secrets is None:
            return {}
        try:
            return self._box.decrypt(source.secrets)
        except SecretsUnreadable as exc:
            raise SecretsUnavailable from exc

    def _load(self, actor: Actor | None, source_id: UUID) -> DataSource:
        """The live source; another owner's (unless admin) or a deleted one is missing."""
        try:
            source: object = self.repository.get(source_id)
        except AggregateNotFoundError:
            raise DataSourceNotFound from None
        if not isinstance(source, DataSource) or source.deleted:
            raise DataSourceNotFound
        if actor is not None and not actor.is_admin and source.owner_id != actor.user_id:
            raise DataSourceNotFound
        return source

    @staticmethod
    def view_of(source: DataSource) -> DataSourceView:
        shown = join_secrets(source.config, dict.fromkeys(source.secret_names, "******"))
        return DataSourceView(
            id=source.id,
            owner_id=source.owner_id,
            name=source.name,
            type=source.source_type,
            description=source.description,
            config=mask_secrets(source.source_type, shown),
            status=source.status,
            last_test=source.last_test,
            created_at=source.created_on,
            updated_at=source.modified_on,
        )
