"""The public OpenAPI document: the gateway's own routes plus every upstream's `/api/` routes.

Each service owns its contract (routes, schemas); the gateway merges them, so `/docs` on :8037
shows the whole public API and a client can be generated from it: every operationId is unique
across the merged document (a clash is logged, and tests/unit/test_openapi_merge.py fails on
one), and every tag is described. A document missing an unreachable upstream is served but
not cached, so it heals as soon as the upstream is back.

The WebSocket is no OpenAPI operation: AsyncAPI describes it, in `asyncapi.yaml` beside this
module (docs/asyncapi.yaml links to it), served at `/asyncapi.yaml`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from importlib import resources
from typing import Any, Final

import httpx
from fastapi import APIRouter, Response

from shared.web.openapi import error_response, operations, with_tag_descriptions

log = logging.getLogger("agentflow.gateway.openapi")

_PACKAGE: Final = __name__.rpartition(".")[0]
ASYNCAPI_PATH: Final = "/asyncapi.yaml"
ASYNCAPI_FILE: Final = "asyncapi.yaml"
# What /docs says beyond the gateway's own description: where the rest is described.
MORE_DOCUMENTS: Final = (
    "\n\nThe live updates of an execution come over the WebSocket "
    "`/api/v1/ws/executions/{execution_id}`, described in [AsyncAPI](/asyncapi.yaml) "
    "(AsyncAPI 3.0). The repository's guide to this API is docs/api.md."
)


def asyncapi_document() -> bytes:
    """The AsyncAPI document of the live execution WebSocket, as shipped with the package."""
    return resources.files(_PACKAGE).joinpath(ASYNCAPI_FILE).read_bytes()


def asyncapi_router() -> APIRouter:
    """`GET /asyncapi.yaml`, read once."""
    document = asyncapi_document()
    router = APIRouter()

    @router.get(ASYNCAPI_PATH, include_in_schema=False)
    async def asyncapi() -> Response:
        return Response(document, media_type="application/yaml")

    return router


class OpenAPIAggregator:
    def __init__(
        self,
        base: dict[str, Any],
        upstreams: dict[str, str],
        http: httpx.AsyncClient,
        *,
        cache_s: float,
    ) -> None:
        self._base = copy.deepcopy(base)
        info = self._base.setdefault("info", {})
        info["description"] = info.get("description", "").rstrip("\n") + MORE_DOCUMENTS
        self._upstreams = upstreams
        self._http = http
        self._cache_s = cache_s
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> dict[str, Any]:
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < self._cache_s:
                return self._cached
            specs = await asyncio.gather(*(self._fetch(url) for url in self._upstreams.values()))
            merged = merge(self._base, dict(zip(self._upstreams, specs, strict=True)))
            if all(spec is not None for spec in specs):
                self._cached, self._cached_at = merged, time.monotonic()
            return merged

    async def _fetch(self, base_url: str) -> dict[str, Any] | None:
        try:
            response = await self._http.get(base_url + "/openapi.json", timeout=5.0)
            response.raise_for_status()
            spec = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("OpenAPI of %s unavailable: %r", base_url, exc)
            return None
        return spec if isinstance(spec, dict) else None


def merge(base: dict[str, Any], specs: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    document = copy.deepcopy(base)
    paths: dict[str, Any] = document.setdefault("paths", {})
    components: dict[str, dict[str, Any]] = document.setdefault("components", {})
    missing: list[str] = []
    for name, spec in specs.items():
        if spec is None:
            missing.append(name)
            continue
        for path, item in spec.get("paths", {}).items():
            if path.startswith("/api/"):
                paths[path] = _with_gateway_answers(item, templated="{" in path)
        for section, entries in spec.get("components", {}).items():
            target = components.setdefault(section, {})
            for key, value in entries.items():
                if key in target and target[key] != value:
                    log.warning(
                        "component %s/%s differs between services; kept first", section, key
                    )
                    continue
                target[key] = value
    _warn_of_duplicate_operation_ids(document)
    with_tag_descriptions(document)
    if missing:
        info = document.setdefault("info", {})
        note = "\n\n**Unavailable right now:** " + ", ".join(sorted(missing))
        info["description"] = info.get("description", "") + note
        info["x-unavailable-upstreams"] = sorted(missing)
    return document


def _warn_of_duplicate_operation_ids(document: dict[str, Any]) -> None:
    seen: set[str] = set()
    for operation in operations(document):
        operation_id = operation.get("operationId")
        if operation_id in seen:
            log.warning("operationId %s is used by more than one operation", operation_id)
        if isinstance(operation_id, str):
            seen.add(operation_id)


def _with_gateway_answers(item: dict[str, Any], *, templated: bool) -> dict[str, Any]:
    """What may answer any proxied operation besides its route: the gateway (upstream down or
    too slow, body over its limit, services/gateway/proxy.py; a path parameter that makes a
    dot segment or holds an encoded slash, services/gateway/paths.py) or a service whose
    store is unreachable (503)."""
    item = copy.deepcopy(item)
    for operation in operations({"paths": {"": item}}):
        responses: dict[str, Any] = operation.setdefault("responses", {})
        if templated:
            responses.setdefault(
                "400", error_response("A path parameter is `.`, `..` or holds an encoded `/` "
                                      "(INVALID_PATH)")
            )  # fmt: skip
        responses.setdefault("503", error_response("A service or its store is down; retry"))
        responses.setdefault("504", error_response("Upstream timed out (UPSTREAM_TIMEOUT)"))
        if "requestBody" in operation:
            responses.setdefault("413", error_response("Body too large (PAYLOAD_TOO_LARGE)"))
    return item
