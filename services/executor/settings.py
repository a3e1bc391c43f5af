"""Executor settings (api process and workers)."""

from __future__ import annotations

from typing import ClassVar

from shared.settings import ServiceSettings, service_port_field


class ExecutorSettings(ServiceSettings):
    service_name: ClassVar[str] = "executor"

    port: int = service_port_field(8103, "executor")
    workflows_url: str = "http://127.0.0.1:8102"
