"""Query grants: the one credential workers hold. A worker runs a workflow's data source query
as the workflow's owner; it proves that with a short-lived grant signed by
`AGENTFLOW_DATASOURCE_QUERY_KEY`, which the data sources service accepts on its query route
and nowhere else. Workers never hold the JWT signing secret, so a compromised worker cannot
mint a user's (or an admin's) token: the most it can do is run read-only queries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt

from shared.security.tokens import InvalidToken
from shared.settings import PlatformSettings

AUDIENCE = "agentflow:data-source-query"
_ALGORITHM = "HS256"
_TTL = timedelta(minutes=1)


class QueryGrants:
    def __init__(self, settings: PlatformSettings) -> None:
        self._key = settings.datasource_query_key.get_secret_value()
        self._issuer = settings.jwt_issuer

    def issue(self, owner_id: uuid.UUID, *, now: datetime | None = None) -> str:
        """A grant to query the data sources of `owner_id` for one minute."""
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(owner_id),
            "aud": AUDIENCE,
            "iat": int(issued.timestamp()),
            "exp": int((issued + _TTL).timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": self._issuer,
        }
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def verify(self, grant: str) -> uuid.UUID:
        """The owner a valid grant speaks for; `InvalidToken` otherwise."""
        try:
            claims = jwt.decode(
                grant,
                self._key,
                algorithms=[_ALGORITHM],
                audience=AUDIENCE,
                issuer=self._issuer,
                options={"require": ["sub", "aud", "exp", "iat", "jti", "iss"]},
                leeway=5,
            )
            return uuid.UUID(str(claims["sub"]))
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidToken from exc
