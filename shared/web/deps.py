"""Dependency aliases any service's routes may use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from shared.i18n import Language
from shared.web.errors import language_of


async def _language(request: Request) -> Language:
    return language_of(request)


RequestLanguage = Annotated[Language, Depends(_language)]

# The largest integer both stores take (signed 64-bit), as an OFFSET or an event version:
# beyond it SQLite overflows (500) where a client meant "far away".
MAX_INT64 = 2**63 - 1

Skip = Annotated[int, Query(ge=0, le=MAX_INT64, description="跳过记录数")]

# PostgreSQL text cannot hold NUL: free text that is searched or stored refuses it (422).
NO_NUL = r"^[^\x00]*$"
