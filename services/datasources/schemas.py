"""Request and response bodies of `/api/v1/data-sources`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from services.datasources.configs import ApiConfig, JsonConfig, MySQLConfig, PostgresConfig
from shared.web.openapi import schema_of

SourceType = Literal["mysql", "postgresql", "api", "json"]
SourceStatus = Literal["inactive", "active", "error"]

_MYSQL_EXAMPLE: dict[str, Any] = {
    "name": "MySQL数据源",
    "type": "mysql",
    "description": "描述",
    "config": {
        "host": "localhost",
        "port": 3306,
        "database": "test",
        "username": "user",
        "password": "password",
    },
}


Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=2000)]


class _NewSource(BaseModel):
    name: Name
    description: Description = ""


class NewMySQLSource(_NewSource):
    """MySQL or MariaDB."""

    type: Literal["mysql"]
    config: MySQLConfig


class NewPostgresSource(_NewSource):
    """PostgreSQL."""

    type: Literal["postgresql"]
    config: PostgresConfig


class NewApiSource(_NewSource):
    """An HTTP API answering JSON."""

    type: Literal["api"]
    config: ApiConfig


class NewJsonSource(_NewSource):
    """A JSON document, inline or a file."""

    type: Literal["json"]
    config: JsonConfig


# What `POST /data-sources` takes, one schema per type: how the document describes it.
NewSource = Annotated[
    NewMySQLSource | NewPostgresSource | NewApiSource | NewJsonSource, Field(discriminator="type")
]


class DataSourceCreate(BaseModel):
    """Validated leniently here; the config is then checked by its type's model (the same
    models `NewSource` documents), so that a bad config answers 422
    `INVALID_DATA_SOURCE_CONFIG` naming the field."""

    model_config = {"json_schema_extra": {"examples": [_MYSQL_EXAMPLE]}}

    name: Name
    type: SourceType
    description: Description = ""
    config: dict[str, Any] = Field(
        description="By type; docs/data-sources.md lists every field. Secrets are encrypted."
    )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        documented = schema_of(NewSource, handler)
        documented["examples"] = [_MYSQL_EXAMPLE]
        documented["description"] = (
            "A data source: its `config` depends on its `type` (docs/data-sources.md). "
            "Secrets are stored encrypted and shown masked."
        )
        return documented


class DataSourceUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    config: dict[str, Any] | None = Field(
        default=None,
        description='Partial: keys not given are kept; a secret given as "******" is kept, '
        "as null is removed.",
    )


class LastTest(BaseModel):
    status: Literal["success", "failed"]
    message: str
    error_kind: str | None = None
    tested_at: datetime


class DataSourceOut(BaseModel):
    id: UUID
    owner_id: UUID
    name: str
    type: SourceType
    description: str
    config: dict[str, Any] = Field(description='Secrets appear as "******".')
    status: SourceStatus = Field(description="inactive (not tested), active or error.")
    last_test: LastTest | None
    created_at: datetime
    updated_at: datetime


class MessageOut(BaseModel):
    message: str


class TestOut(BaseModel):
    status: Literal["success", "failed"]
    message: str
    error_kind: (
        Literal["auth", "unreachable", "timeout", "not_found", "refused", "bad_query", "failed"]
        | None
    ) = Field(default=None, description="Why it failed, when it did.")
    tested_at: datetime


class QueryIn(BaseModel):
    model_config = {
        "json_schema_extra": {"examples": [{"query": "SELECT * FROM users WHERE id = %(id)s",
                                            "parameters": {"id": 1}}]}
    }  # fmt: skip

    query: str = Field(
        default="",
        max_length=100_000,
        description="SQL (one read-only statement) for mysql/postgresql; a path for api; "
        "a JMESPath expression for json.",
    )
    parameters: dict[str, Any] | list[Any] | None = Field(
        default=None, description="SQL: %(name)s or %s placeholders; api: {name} templates."
    )
    limit: int | None = Field(default=None, ge=1, le=100_000, description="At most max_rows.")


class QueryOut(BaseModel):
    data: list[dict[str, Any]]
    count: int
    truncated: bool = Field(description="More rows existed than the limit.")
    columns: list[str]
