"""`CurrentPrincipal`: the verified caller, for any route that needs one.

The app factory puts a `TokenService` on `app.state.tokens`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from shared.errors import Unauthorized
from shared.security.tokens import Principal, TokenService

LOGIN_URL = "/api/v1/auth/login"

# OAuth2 password flow so Swagger UI's "Authorize" logs in through the real login endpoint.
_bearer = OAuth2PasswordBearer(tokenUrl=LOGIN_URL, auto_error=False)


def token_service(request: Request) -> TokenService:
    tokens = request.app.state.tokens
    assert isinstance(tokens, TokenService)
    return tokens


async def tokens_dependency(request: Request) -> TokenService:
    # Dependencies are async: a sync one costs a threadpool hop per request.
    return token_service(request)


async def bearer_token(token: Annotated[str | None, Depends(_bearer)]) -> str:
    """The bearer token sent, not yet verified; 401 when there is none."""
    if not token:
        raise Unauthorized
    return token


BearerToken = Annotated[str, Depends(bearer_token)]


async def current_principal(request: Request, token: BearerToken) -> Principal:
    return token_service(request).verify(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
