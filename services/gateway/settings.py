"""Gateway settings: where each upstream service answers, and how long to wait for it."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, service_port_field


class GatewaySettings(ServiceSettings):
    service_name: ClassVar[str] = "gateway"

    port: int = service_port_field(8037, "gateway")
    # The public surface listens on every interface; internal services stay on loopback.
    host: str = Field(
        default="0.0.0.0",  # noqa: S104
        validation_alias="AGENTFLOW_GATEWAY_HOST",
    )

    auth_url: str = "http://127.0.0.1:8101"
    workflows_url: str = "http://127.0.0.1:8102"
    executor_url: str = "http://127.0.0.1:8103"
    datasources_url: str = "http://127.0.0.1:8104"

    upstream_connect_timeout_s: float = Field(default=2.0, gt=0)
    upstream_timeout_s: float = Field(default=30.0, gt=0)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    openapi_cache_s: float = Field(default=60.0, ge=0)
    # At start, wait this long for upstreams to answer /healthz before serving (0: don't wait).
    wait_for_upstreams_s: float = Field(default=30.0, ge=0)

    # Prometheus metrics are not on the public listener: they have a port of their own, on
    # loopback unless told otherwise (in a pod: every interface, for the scraper). 0: none.
    metrics_host: str = Field(
        default="127.0.0.1", validation_alias="AGENTFLOW_GATEWAY_METRICS_HOST"
    )
    metrics_port: int = Field(
        default=8111, ge=0, le=65535, validation_alias="AGENTFLOW_GATEWAY_METRICS_PORT"
    )
    # Live-update sockets one user may hold open at once, per gateway process.
    max_websockets_per_user: int = Field(default=20, ge=1)

    def upstreams(self) -> dict[str, str]:
        """Upstream name -> base URL."""
        return {
            "auth": self.auth_url,
            "workflows": self.workflows_url,
            "executor": self.executor_url,
            "datasources": self.datasources_url,
        }
