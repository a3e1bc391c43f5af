"""The public OpenAPI document: the gateway's own routes plus every upstream's `/api/` routes.

Each service owns its contract (routes, schemas); the gateway merges them, so `/docs` on :8037
shows the whole public API and a client can be generated from it. A document missing an
unreachable upstream is served but not cached, so it heals as soon as the upstream is back.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

import httpx

from shared.web.openapi import error_response, operations

log = logging.getLogger("agentflow.gateway.openapi")


class OpenAPIAggregator:
    def __init__(
        self,
        base: dict[str, Any],
        upstreams: dict[str, str],
        http: httpx.AsyncClient,
        *,
        cache_s: float,
    ) -> None:
        self._base = base
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
    if missing:
        info = document.setdefault("info", {})
        note = "\n\n**Unavailable right now:** " + ", ".join(sorted(missing))
        info["description"] = info.get("description", "") + note
        info["x-unavailable-upstreams"] = sorted(missing)
    return document


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
