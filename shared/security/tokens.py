"""HS256 JWTs: `sub` (user id), `name` (username), `role`, `exp`, `iat`, `jti`, `iss`.

Only the configured algorithm is accepted, so `alg: none` and algorithm-confusion tokens fail.
A token revoked by logout is refused, and the role is the user's role now, not the one the
token was issued with (`shared/security/revocations.py` keeps both current from the bus).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, cast

import jwt

from shared.errors import Unauthorized
from shared.i18n import Message
from shared.security.revocations import TokenRevocations
from shared.settings import PlatformSettings

Role = Literal["user", "admin"]
ROLES: tuple[Role, ...] = ("user", "admin")

INVALID_TOKEN = Message("登录凭证无效或已过期,请重新登录", "Invalid or expired token; log in again")


class InvalidToken(Unauthorized):
    default_code = "INVALID_TOKEN"
    default_message = INVALID_TOKEN


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says."""

    user_id: uuid.UUID
    role: Role
    token_id: str
    username: str = ""
    expires_at: float = 0.0  # epoch seconds; a revocation is kept until then

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


_VERIFIED_KEPT = 4096
_LEEWAY_S = 5  # a token is still taken this long after its `exp` (clocks differ)


class TokenService:
    def __init__(
        self, settings: PlatformSettings, revocations: TokenRevocations | None = None
    ) -> None:
        self.revocations = revocations or TokenRevocations()
        self._secret = settings.jwt_secret.get_secret_value()
        self._algorithm = settings.jwt_algorithm
        self._ttl = timedelta(minutes=settings.jwt_ttl_minutes)
        self._issuer = settings.jwt_issuer
        # Tokens already verified, until they expire: checking a signature costs more than a
        # request's own work, and a client sends the same token request after request.
        # Revocations and role changes are still checked on every call (`verify`).
        self._verified: dict[str, tuple[float, dict[str, object]]] = {}

    @property
    def ttl_seconds(self) -> int:
        return int(self._ttl.total_seconds())

    def issue(
        self,
        user_id: uuid.UUID,
        role: Role,
        *,
        username: str = "",
        now: datetime | None = None,
        ttl: timedelta | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "name": username,  # shown as the author of versions; not trusted for access
            "role": role,
            "iat": int(issued.timestamp()),
            "exp": int((issued + (ttl or self._ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def verify(self, token: str) -> Principal:
        claims = self.decode(token)
        token_id = str(claims["jti"])
        if self.revocations.is_revoked(token_id):
            raise InvalidToken
        role = self.revocations.role_of(str(claims["sub"]), str(claims["role"]))
        if role not in ROLES:
            raise InvalidToken
        return Principal(
            user_id=uuid.UUID(str(claims["sub"])),
            role=role,
            token_id=token_id,
            username=str(claims.get("name", "")),
            expires_at=float(cast(float, claims["exp"])),
        )

    def decode(self, token: str) -> dict[str, object]:
        """The claims of a token this service signed and that has not expired."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[0] + _LEEWAY_S:
                return dict(known[1])
            self._verified.pop(token, None)
            raise InvalidToken
        claims = self._check_signature(token)
        if len(self._verified) >= _VERIFIED_KEPT:
            self._verified.clear()  # simplest bound; a busy process re-verifies once each
        self._verified[token] = (float(cast(float, claims["exp"])), claims)
        return dict(claims)

    def _check_signature(self, token: str) -> dict[str, object]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                options={"require": ["sub", "role", "exp", "iat", "jti", "iss"]},
                leeway=_LEEWAY_S,
            )
            user_id = uuid.UUID(str(claims["sub"]))
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken from exc
        claims["sub"] = str(user_id)
        return dict(claims)
