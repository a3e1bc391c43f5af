"""Routes of `/api/v1/auth`. Handlers are sync: FastAPI runs them in its threadpool, which is
where the (synchronous) event store and argon2 belong."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from services.auth.application import InvalidCredentials, UserNotFound
from services.auth.deps import AuthApp, ClientAddress, Throttle, Tokens
from services.auth.schemas import MeOut, RegisterRequest, TokenOut, UserOut
from shared.security.deps import CurrentPrincipal
from shared.security.tokens import InvalidToken
from shared.web.errors import error_responses

router = APIRouter(prefix="/api/v1/auth", tags=["认证 auth"])


@router.post(
    "/register",
    response_model=UserOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
)
def register(body: RegisterRequest, auth: AuthApp) -> UserOut:
    """Create an account with a unique username and email."""
    user = auth.register(body.username, str(body.email), body.password)
    return UserOut.model_validate(user, from_attributes=True)


@router.post("/login", response_model=TokenOut, responses=error_responses(401, 422, 429))
def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    auth: AuthApp,
    tokens: Tokens,
    throttle: Throttle,
    address: ClientAddress,
) -> TokenOut:
    """Exchange a username (or email) and password for a bearer token."""
    account = auth.account_key(form.username)
    throttle.check(account, address)
    try:
        user = auth.authenticate(form.username, form.password)
    except InvalidCredentials:
        throttle.failed(account, address)
        raise
    throttle.succeeded(account)
    token = tokens.issue(user.id, user.role, username=user.username)
    return TokenOut(access_token=token, expires_in=tokens.ttl_seconds)


@router.get("/me", response_model=MeOut, responses=error_responses(401))
def me(principal: CurrentPrincipal, auth: AuthApp) -> MeOut:
    """The account the bearer token belongs to."""
    try:
        user = auth.get_user(principal.user_id)
    except UserNotFound:
        raise InvalidToken from None  # a valid signature for an account that no longer exists
    return MeOut.model_validate(user, from_attributes=True)
