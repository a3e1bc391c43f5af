"""Which public path goes to which upstream, and which paths need no token."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUTES: tuple[tuple[str, str], ...] = (
    ("/api/v1/auth", "auth"),
    ("/api/v1/workflows", "workflows"),
    ("/api/v1/executions", "executor"),
    ("/api/v1/execution-logs", "executor"),
    ("/api/v1/data-sources", "datasources"),
)
# Running a workflow is the executor's, though it lives under the workflows prefix.
_EXECUTE = re.compile(r"^/api/v1/workflows/[^/]+/execute/?$")

PUBLIC_PATHS = frozenset({"/api/v1/auth/register", "/api/v1/auth/login"})


@dataclass(frozen=True)
class Route:
    upstream: str
    public: bool


def resolve(path: str) -> Route | None:
    if _EXECUTE.match(path):
        return Route(upstream="executor", public=False)
    for prefix, upstream in ROUTES:
        if path == prefix or path.startswith(prefix + "/"):
            return Route(upstream=upstream, public=path.rstrip("/") in PUBLIC_PATHS)
    return None
