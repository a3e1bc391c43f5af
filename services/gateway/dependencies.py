"""What the gateway's `/diagnostics` and `agentflow_dependency_up` report: NATS (live updates
over WebSocket) and each upstream, with what the upstream says of its own dependencies.

None of it decides the gateway's readiness (ADR 0008): the gateway only proxies, so an
upstream that is down answers 503 `UPSTREAM_UNAVAILABLE` on its own routes while `/docs`,
login and every other upstream keep being served.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.gateway.proxy import UpstreamClient
from services.gateway.settings import GatewaySettings
from shared.bus.client import JetStreamBus
from shared.web.health import DIAGNOSTICS_PATH, DependencyCheck, DependencyState

# Below the monitor's own timeout (3 s); an upstream answers from its last round at once.
UPSTREAM_TIMEOUT_S = 2.5
_STATES = frozenset({"ok", "failing", "unknown"})


def gateway_dependencies(
    settings: GatewaySettings, upstreams: UpstreamClient, bus: JetStreamBus
) -> dict[str, DependencyCheck]:
    checks: dict[str, DependencyCheck] = {"nats": bus.ping}
    for name, base_url in settings.upstreams().items():
        checks[name] = upstream_check(upstreams.http, base_url)
    return checks


def upstream_check(http: httpx.AsyncClient, base_url: str) -> DependencyCheck:
    """Up when the upstream answers its `/diagnostics` (200, or 503 when one of its own
    dependencies fails); its report comes along as the nested states."""

    async def check() -> DependencyState:
        try:
            response = await http.get(base_url + DIAGNOSTICS_PATH, timeout=UPSTREAM_TIMEOUT_S)
            body: Any = response.json()
        except (httpx.HTTPError, ValueError):
            return DependencyState(up=False)
        reported = body.get("dependencies") if isinstance(body, dict) else None
        if response.status_code not in (200, 503) or not isinstance(reported, dict):
            return DependencyState(up=False)
        nested = {str(k): v if v in _STATES else "unknown" for k, v in reported.items()}
        return DependencyState(up=True, nested=nested)

    return check
