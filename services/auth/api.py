"""Routes of `/api/v1/auth`. Handlers are sync: FastAPI runs them in its threadpool, which is
where the (synchronous) event store and argon2 belong."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from services.auth.application import UserNotFound
from services.auth.deps import AuthApp, ClientAddress, RegisterThrottle, Throttle, Tokens
from services.auth.schemas import LoginForm, MeOut, RegisterRequest, TokenOut, UserOut
from shared.security.deps import CurrentPrincipal
from shared.security.tokens import InvalidToken
from shared.web.errors import error_responses

router = APIRouter(prefix="/api/v1/auth", tags=["认证 auth"])


@router.post(
    "/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422, 429, 503),
)
def register(
    body: RegisterRequest, auth: AuthApp, throttle: RegisterThrottle, address: ClientAddress
) -> UserOut:
    """Create an account with a unique username and email."""
    throttle.attempt(address)
    user = auth.register(body.username, str(body.email), body.password)
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/login", response_model=TokenOut, responses=error_responses(401, 422, 429, 503))
def login(
    form: Annotated[LoginForm, Depends()],
    auth: AuthApp,
    tokens: Tokens,
    throttle: Throttle,
    address: ClientAddress,
) -> TokenOut:
    """Exchange a username (or email) and password for a bearer token."""
    # Counted as a failure before the password is hashed, taken back only on success: a
    # burst of parallel guesses cannot all pass the check before any of them is counted.
    attempt = throttle.attempt(auth.account_key(form.username), address)
    user = auth.authenticate(form.username, form.password)
    throttle.succeeded(attempt)
    token = tokens.issue(user.id, user.role, username=user.username)
    return TokenOut(access_token=token, expires_in=tokens.ttl_seconds)


@router.get("/me", response_model=MeOut, responses=error_responses(401))
def get_current_user(principal: CurrentPrincipal, auth: AuthApp) -> MeOut:
    """The account the bearer token belongs to."""
    try:
        user = auth.get_user(principal.user_id)
    except UserNotFound:
        raise InvalidToken from None  # a valid signature for an account that no longer exists
    return MeOut.model_validate(user, from_attributes=True)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
def logout(principal: CurrentPrincipal, auth: AuthApp, tokens: Tokens) -> Response:
    """End this bearer token now; every service refuses it from then on."""
    auth.revoke_token(principal.token_id, principal.user_id, principal.expires_at)
    tokens.revocations.revoke(principal.token_id, principal.expires_at)  # here at once
    return Response(status_code=status.HTTP_204_NO_CONTENT)
