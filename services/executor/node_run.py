"""What running one node attempt gives, whichever runner ran it and wherever: a `NodeResult`,
or a `NodeRunError` saying why not (in the user's language, with whether a retry may help)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.i18n import LocalizedError, Message

BAD_CONFIG = Message("节点配置无效:{detail}", "invalid node configuration: {detail}")


class NodeRunError(LocalizedError):
    """A node failed. `retryable` failures (timeouts, 429/5xx) are worth another attempt;
    deterministic ones (a bad config, an expression that fails) would fail the same way."""

    def __init__(
        self,
        message: Message,
        *,
        retryable: bool = False,
        logs: Sequence[tuple[str, str]] = (),
        **params: Any,
    ) -> None:
        super().__init__(message, **params)
        self.retryable = retryable
        self.logs = logs  # what the node did before it failed (an agent's tool calls)


@dataclass(frozen=True)
class NodeResult:
    output: Any
    branch: str | None = None  # the edges a condition takes
    logs: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (level, message)
