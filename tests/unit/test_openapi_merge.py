from __future__ import annotations

from typing import Any

from services.gateway.openapi import merge

BASE = {"openapi": "3.1.0", "info": {"title": "gw", "description": "d"}, "paths": {"/healthz": {}}}
AUTH = {
    "paths": {"/api/v1/auth/me": {"get": {}}, "/healthz": {"get": {"x": 1}}},
    "components": {"schemas": {"MeOut": {"type": "object"}, "ErrorResponse": {"type": "object"}}},
}
OTHER = {
    "paths": {"/api/v1/workflows": {"get": {}}},
    "components": {"schemas": {"ErrorResponse": {"type": "object"}}},
}


def test_merges_public_paths_and_components() -> None:
    document = merge(BASE, {"auth": AUTH, "workflows": OTHER})
    assert set(document["paths"]) == {"/healthz", "/api/v1/auth/me", "/api/v1/workflows"}
    # An upstream's own health route does not replace the gateway's.
    assert document["paths"]["/healthz"] == {}
    assert set(document["components"]["schemas"]) == {"MeOut", "ErrorResponse"}
    assert "x-unavailable-upstreams" not in document["info"]


def test_missing_upstream_is_named_and_base_is_untouched() -> None:
    document = merge(BASE, {"auth": AUTH, "workflows": None})
    assert document["info"]["x-unavailable-upstreams"] == ["workflows"]
    assert "workflows" in document["info"]["description"]
    assert "x-unavailable-upstreams" not in BASE["info"]


def test_operations_with_path_parameters_document_the_gateways_400() -> None:
    spec: dict[str, Any] = {
        "paths": {"/api/v1/workflows/{workflow_id}": {"get": {}}, "/api/v1/workflows": {"get": {}}}
    }
    paths = merge(BASE, {"workflows": spec})["paths"]
    assert "400" in paths["/api/v1/workflows/{workflow_id}"]["get"]["responses"]  # INVALID_PATH
    assert "400" not in paths["/api/v1/workflows"]["get"]["responses"]
