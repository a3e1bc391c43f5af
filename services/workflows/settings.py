"""Workflows service settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings, service_port_field


class WorkflowsSettings(ServiceSettings):
    service_name: ClassVar[str] = "workflows"

    port: int = service_port_field(8102, "workflows")
    projection_poll_s: float = Field(default=2.0, gt=0)
    # Live (not deleted) workflows one user may own; creating, importing or copying a
    # template beyond it answers 429 QUOTA_EXCEEDED.
    max_workflows_per_user: int = Field(default=1000, ge=1)
    # A write is answered once its event is on the bus, so other services' copies (the
    # executor's current versions) see it; at most this long when NATS is unreachable.
    publish_before_answer_s: float = Field(default=2.0, ge=0, le=60)
