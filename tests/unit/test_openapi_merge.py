from __future__ import annotations

import importlib.metadata
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from services.auth import main as auth_main
from services.datasources import main as datasources_main
from services.executor import main as executor_main
from services.gateway import main as gateway_main
from services.gateway.openapi import merge
from services.gateway.settings import GatewaySettings
from services.workflows import main as workflows_main

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


def test_a_duplicate_operation_id_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    clash: dict[str, Any] = {"paths": {"/api/v1/x": {"get": {"operationId": "list_workflows"}}}}
    mine: dict[str, Any] = {
        "paths": {"/api/v1/workflows": {"get": {"operationId": "list_workflows"}}}
    }
    with caplog.at_level(logging.WARNING, logger="agentflow.gateway.openapi"):
        merge(BASE, {"a": clash, "b": mine})
    assert "list_workflows" in caplog.text


def test_tags_get_their_descriptions_and_unknown_ones_their_names() -> None:
    spec: dict[str, Any] = {
        "paths": {
            "/api/v1/workflows": {"get": {"tags": ["工作流 workflows"]}},
            "/api/v1/new": {"get": {"tags": ["new"]}},
        }
    }
    tags = merge(BASE, {"workflows": spec})["tags"]
    assert tags[0]["name"] == "工作流 workflows"
    assert tags[0]["description"]
    assert tags[1] == {"name": "new"}


# -- the real document: every service's app, merged by the gateway as it serves it -----------

# The public operations, by operationId: the method names of generated clients. Renaming one
# breaks every client generated before, so it is a deliberate change of this list (and of the
# note in docs/api.md).
OPERATION_IDS = {
    ("GET", "/healthz"): "healthz",
    ("GET", "/readyz"): "readyz",
    ("GET", "/diagnostics"): "diagnostics",
    ("POST", "/api/v1/auth/register"): "register",
    ("POST", "/api/v1/auth/login"): "login",
    ("GET", "/api/v1/auth/me"): "get_current_user",
    ("POST", "/api/v1/auth/logout"): "logout",
    ("GET", "/api/v1/workflows"): "list_workflows",
    ("POST", "/api/v1/workflows"): "create_workflow",
    ("POST", "/api/v1/workflows/validate"): "validate_workflow",
    ("GET", "/api/v1/workflows/templates"): "list_workflow_templates",
    ("POST", "/api/v1/workflows/templates/{template_id}/create"): "create_workflow_from_template",
    ("POST", "/api/v1/workflows/import"): "import_workflow",
    ("GET", "/api/v1/workflows/{workflow_id}"): "get_workflow",
    ("PUT", "/api/v1/workflows/{workflow_id}"): "update_workflow",
    ("DELETE", "/api/v1/workflows/{workflow_id}"): "delete_workflow",
    ("PUT", "/api/v1/workflows/{workflow_id}/status"): "set_workflow_status",
    ("GET", "/api/v1/workflows/{workflow_id}/export"): "export_workflow",
    ("GET", "/api/v1/workflows/{workflow_id}/versions"): "list_workflow_versions",
    ("GET", "/api/v1/workflows/{workflow_id}/versions/{version}"): "get_workflow_version",
    ("POST", "/api/v1/workflows/{workflow_id}/versions/{version}/rollback"): "rollback_workflow",
    ("GET", "/api/v1/workflows/{aggregate_id}/history"): "get_workflow_history",
    ("POST", "/api/v1/workflows/{workflow_id}/execute"): "execute_workflow",
    ("POST", "/api/v1/executions"): "create_execution",
    ("GET", "/api/v1/executions"): "list_executions",
    ("GET", "/api/v1/executions/{execution_id}"): "get_execution",
    ("GET", "/api/v1/executions/{execution_id}/status"): "get_execution_status",
    ("POST", "/api/v1/executions/{execution_id}/cancel"): "cancel_execution",
    ("POST", "/api/v1/executions/{execution_id}/resume"): "resume_execution",
    ("GET", "/api/v1/execution-logs/executions/{execution_id}"): "list_execution_logs",
    ("GET", "/api/v1/execution-logs/executions/{execution_id}/summary"): (
        "get_execution_log_summary"
    ),
    ("GET", "/api/v1/executions/{aggregate_id}/history"): "get_execution_history",
    ("GET", "/api/v1/data-sources"): "list_data_sources",
    ("POST", "/api/v1/data-sources"): "create_data_source",
    ("GET", "/api/v1/data-sources/{data_source_id}"): "get_data_source",
    ("PUT", "/api/v1/data-sources/{data_source_id}"): "update_data_source",
    ("DELETE", "/api/v1/data-sources/{data_source_id}"): "delete_data_source",
    ("POST", "/api/v1/data-sources/{data_source_id}/test"): "test_data_source",
    ("POST", "/api/v1/data-sources/{data_source_id}/query"): "query_data_source",
    ("GET", "/api/v1/data-sources/{aggregate_id}/history"): "get_data_source_history",
}
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
SERVICES = {
    "auth": auth_main,
    "workflows": workflows_main,
    "executor": executor_main,
    "datasources": datasources_main,
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The gateway app (no lifespan: nothing connects), its upstreams answered in process by
    every service's own app."""
    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith("AGENTFLOW_"):
                patch.delenv(key)
        patch.setenv("AGENTFLOW_ENVIRONMENT", "development")
        patch.setenv("AGENTFLOW_STORE", "sqlite")
        patch.setenv("AGENTFLOW_DATA_DIR", str(tmp_path_factory.mktemp("openapi")))
        patch.setenv("AGENTFLOW_OPENAPI_CACHE_S", "0")
        for module in (*SERVICES.values(), gateway_main):
            # Process-wide logging and tracing are not this test's to set.
            patch.setattr(module, "configure_logging", lambda *_, **__: None)
        documents = {name: module.create_app().openapi() for name, module in SERVICES.items()}
        settings = GatewaySettings()
        by_port = {
            httpx.URL(url).port: documents[name] for name, url in settings.upstreams().items()
        }

        def upstream(request: httpx.Request) -> httpx.Response:
            assert request.url.path == "/openapi.json", request.url
            return httpx.Response(200, json=by_port[request.url.port])

        app = gateway_main.create_app(settings, transport=httpx.MockTransport(upstream))
        yield TestClient(app)


@pytest.fixture(scope="module")
def public(gateway: TestClient) -> dict[str, Any]:
    document = gateway.get("/openapi.json").json()
    assert isinstance(document, dict)
    assert "x-unavailable-upstreams" not in document["info"]
    return document


def test_operation_ids_are_unique_snake_case_and_stable(public: dict[str, Any]) -> None:
    found = {
        (method.upper(), path): operation.get("operationId")
        for path, item in public["paths"].items()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch")
    }
    ids = list(found.values())
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert all(isinstance(i, str) and SNAKE_CASE.match(i) for i in ids), ids
    assert found == OPERATION_IDS


def test_every_tag_is_described(public: dict[str, Any]) -> None:
    used = {
        tag
        for item in public["paths"].values()
        for operation in item.values()
        for tag in operation.get("tags", [])
    }
    described = {tag["name"]: tag.get("description", "") for tag in public["tags"]}
    assert set(described) == used
    assert all(description.strip() for description in described.values()), described


def test_the_version_is_the_packages(public: dict[str, Any]) -> None:
    assert public["info"]["version"] == importlib.metadata.version("agentflow")


def test_the_docs_point_to_the_websockets_asyncapi_document(
    gateway: TestClient, public: dict[str, Any]
) -> None:
    assert "/asyncapi.yaml" in public["info"]["description"]
    served = gateway.get("/asyncapi.yaml")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(served.content)["asyncapi"] == "3.0.0"
