"""Dependency aliases for the auth routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.auth.application import AuthApplication
from shared.security.deps import token_service
from shared.security.tokens import TokenService


def _auth_app(request: Request) -> AuthApplication:
    app = request.app.state.auth
    assert isinstance(app, AuthApplication)
    return app


AuthApp = Annotated[AuthApplication, Depends(_auth_app)]
Tokens = Annotated[TokenService, Depends(token_service)]
