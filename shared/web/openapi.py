"""Every service's OpenAPI document shows the error shape its handlers really answer.

FastAPI documents a request validation failure as its own `HTTPValidationError`
(`{"detail": [...]}`) and leaves undocumented the 400 it answers for a body it cannot decode
(invalid UTF-8). Our handlers (`shared.web.errors`) answer `ErrorResponse` for both, so the
document is corrected here once, for every route, and clients generated from it (and the
API fuzzer in tests/security) see the truth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.web.errors import ErrorResponse

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorResponse"}
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


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
            responses.setdefault("400", error_response("Malformed body (not UTF-8 or not JSON)"))
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)  # nothing refers to them any more
    return document


def document_error_shape(app: FastAPI) -> None:
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        return with_error_shape(generate())

    app.openapi = openapi  # type: ignore[method-assign]
