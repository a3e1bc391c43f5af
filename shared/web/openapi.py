"""What every service's OpenAPI document says beyond what FastAPI derives from the routes.

- **The error shape its handlers really answer.** FastAPI documents a request validation
  failure as its own `HTTPValidationError` (`{"detail": [...]}`) and leaves undocumented the
  400 it answers for a body it cannot decode (invalid UTF-8). Our handlers
  (`shared.web.errors`) answer `ErrorResponse` for both, so the document is corrected here
  once, for every route, and clients generated from it (and the API fuzzer in
  tests/security) see the truth.
- **operationIds a generated client can use**: the route's name (its function's, unless the
  route names itself), e.g. `list_workflows`, not FastAPI's `list_workflows_api_v1_workflows_get`.
  They are method names in generated clients, so they must be unique across the gateway's
  merged document and stay stable (tests/unit/test_openapi_merge.py pins them).
- **A description for every tag** (`TAGS`), and the package's version as `info.version`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import GetJsonSchemaHandler, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shared.web.errors import ErrorResponse

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

# Every tag of the public document (as the routers name them), in the order the docs show them.
TAGS: Final[tuple[dict[str, str], ...]] = (
    {
        "name": "认证 auth",
        "description": "注册、登录与令牌。Accounts and bearer tokens: register, log in (a form, "
        "as OAuth2's password flow), who am I, log out. Register and login need no token.",
    },
    {
        "name": "工作流 workflows",
        "description": "工作流的定义、版本、模板与导入导出。Workflow definitions as React Flow "
        "graphs: create, list and search, validate, versions and rollback, templates, export "
        "and import. Drafts may be saved in any state; validation reports what blocks a run.",
    },
    {
        "name": "执行 executions",
        "description": "运行工作流并查看运行记录。Runs of workflows: start one (it answers at "
        "once and runs in the background), read its record and status, cancel, resume a "
        "failed run. Live updates come over the WebSocket `/api/v1/ws/executions/{id}`, "
        "described in AsyncAPI at `/asyncapi.yaml`.",
    },
    {
        "name": "执行日志 execution logs",
        "description": "执行日志与摘要。The log lines a run recorded, filtered and paged, and "
        "their summary by level and by node.",
    },
    {
        "name": "数据源 data sources",
        "description": "数据源:MySQL、PostgreSQL、HTTP API 与 JSON。Register data sources "
        "(secrets encrypted at rest, shown masked), test the connection, run read-only "
        "queries. The `config` fields depend on the `type`.",
    },
    {
        "name": "health",
        "description": "存活、就绪与诊断。Liveness (`/healthz`), readiness (`/readyz`) and what "
        "the dependencies answer (`/diagnostics`); no token needed.",
    },
)


def package_version() -> str:
    """The installed package's version (pyproject.toml), the document's `info.version`."""
    try:
        return importlib.metadata.version("agentflow")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "0+unknown"


def operation_id(route: APIRoute) -> str:
    """FastAPI's `generate_unique_id_function`: the route's name, a client's method name."""
    return route.name


def schema_of(shape: Any, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
    """The JSON Schema of `shape`, for a model's `__get_pydantic_json_schema__`.

    For request bodies that are validated leniently, so that the service can answer its own
    error code for what is wrong (`INVALID_DATA_SOURCE_CONFIG`, `IMPORT_MALFORMED`), but are
    documented as the service checks them afterwards: `shape` is built from the same models
    the service validates with."""
    return handler(TypeAdapter(shape).core_schema)


@dataclass(frozen=True)
class DocumentedAs:
    """`Annotated[dict[str, Any], DocumentedAs(Shape)]`: validated as the annotated type,
    documented as `Shape` (see `schema_of`)."""

    shape: Any

    def __get_pydantic_json_schema__(
        self, _core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return schema_of(self.shape, handler)


def error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_SCHEMA}}}


def operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation object of the document's paths."""
    return [
        operation
        for item in document.get("paths", {}).values()
        for method, operation in item.items()
        if method in _METHODS and isinstance(operation, dict)
    ]


def with_error_shape(document: dict[str, Any]) -> dict[str, Any]:
    """Correct `document` in place (idempotent) and return it."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    own = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in own.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorResponse", own)
    for operation in operations(document):
        responses: dict[str, Any] = operation.setdefault("responses", {})
        if "422" in responses:
            responses["422"]["content"] = {"application/json": {"schema": ERROR_SCHEMA}}
        if "requestBody" in operation:
            responses.setdefault(
                "400",
                error_response(
                    "Malformed body (INVALID_JSON): not UTF-8; NaN or Infinity; a NUL "
                    "character or a lone surrogate in a string; nested deeper than 64 levels"
                ),
            )
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)  # nothing refers to them any more
    return document


def with_tag_descriptions(document: dict[str, Any]) -> dict[str, Any]:
    """Set the document's `tags` to the descriptions of the tags its operations use (in
    place, idempotent); a tag `TAGS` does not know is listed by name only."""
    used: list[str] = []
    for operation in operations(document):
        for tag in operation.get("tags", []):
            if tag not in used:
                used.append(tag)
    known = [dict(tag) for tag in TAGS if tag["name"] in used]
    names = {tag["name"] for tag in TAGS}
    document["tags"] = known + [{"name": name} for name in used if name not in names]
    return document


def document_openapi(app: FastAPI) -> None:
    """Serve `app`'s document with the error shape and the tag descriptions."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return with_tag_descriptions(with_error_shape(generate()))

    app.openapi = openapi  # type: ignore[method-assign]
