"""Dependency aliases for the auth routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.auth.application import AuthApplication
from services.auth.settings import AuthSettings
from services.auth.throttle import LoginThrottle, RegistrationThrottle
from shared.security.deps import tokens_dependency
from shared.security.tokens import TokenService


async def _auth_app(request: Request) -> AuthApplication:
    app = request.app.state.auth
    assert isinstance(app, AuthApplication)
    return app


AuthApp = Annotated[AuthApplication, Depends(_auth_app)]
Tokens = Annotated[TokenService, Depends(tokens_dependency)]


async def _throttle(request: Request) -> LoginThrottle:
    throttle = request.app.state.login_throttle
    assert isinstance(throttle, LoginThrottle)
    return throttle


async def _register_throttle(request: Request) -> RegistrationThrottle:
    throttle = request.app.state.register_throttle
    assert isinstance(throttle, RegistrationThrottle)
    return throttle


async def client_address(request: Request) -> str:
    """Who is calling: behind the gateway, an entry of X-Forwarded-For (the gateway appends
    the peer it saw; entries before the trusted proxies' are the client's to forge)."""
    settings: AuthSettings = request.app.state.settings
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    position = len(hops) - 1 - settings.trusted_proxy_hops
    if hops and position >= 0:
        return hops[position]
    return request.client.host if request.client else "unknown"


Throttle = Annotated[LoginThrottle, Depends(_throttle)]
RegisterThrottle = Annotated[RegistrationThrottle, Depends(_register_throttle)]
ClientAddress = Annotated[str, Depends(client_address)]
