"""Dependency aliases any service's routes may use."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.i18n import Language
from shared.web.errors import language_of


def _language(request: Request) -> Language:
    return language_of(request)


RequestLanguage = Annotated[Language, Depends(_language)]
