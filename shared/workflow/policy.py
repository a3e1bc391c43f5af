"""Execution policy every node carries: timeout, retry with backoff, and what a failure does."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# "fail": the execution fails. "continue": the node's output becomes its `default_output` and
# the run goes on. "error_edge": the run follows the node's edges with sourceHandle "error".
OnError = Literal["fail", "continue", "error_edge"]


class RetryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=1, ge=1, le=10, description="1 means no retry.")
    backoff_seconds: float = Field(default=1.0, ge=0, le=3600)
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10)
    max_backoff_seconds: float = Field(default=60.0, ge=0, le=3600)

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (the first attempt is 1)."""
        if attempt <= 1:
            return 0.0
        delay = self.backoff_seconds * self.backoff_multiplier ** (attempt - 2)
        return float(min(delay, self.max_backoff_seconds))
