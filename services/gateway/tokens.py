"""The gateway's token checks: a token's signature is checked once, not on every request.

A client sends the same token with every request of a session (and its WebSocket); checking
its HMAC signature and claims again each time was a measurable share of the gateway's CPU.
What can change about a token after it passed is only time (expiry), its revocation and its
user's role: expiry is checked again on every use here, revocation and role by
`TokenService.verify` as before.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Final

from shared.security.tokens import InvalidToken, TokenService
from shared.settings import PlatformSettings

# Tokens whose claims are kept, the most recently used ones (a few MB at most).
SEEN_TOKENS: Final = 4096
# As `TokenService.decode` allows: a token is still taken this long after its `exp`.
_LEEWAY_S: Final = 5


class SeenTokens(TokenService):
    def __init__(self, settings: PlatformSettings, capacity: int = SEEN_TOKENS) -> None:
        super().__init__(settings)
        self._capacity = capacity
        self._seen: OrderedDict[str, tuple[dict[str, object], float]] = OrderedDict()

    def decode(self, token: str) -> dict[str, object]:
        seen = self._seen.get(token)
        if seen is not None:
            claims, expires_at = seen
            if expires_at > time.time() - _LEEWAY_S:
                self._seen.move_to_end(token)
                return dict(claims)
            del self._seen[token]
            raise InvalidToken
        claims = super().decode(token)
        self._seen[token] = (dict(claims), float(str(claims["exp"])))
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return claims
