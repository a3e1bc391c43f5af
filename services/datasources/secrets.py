"""Encryption at rest of data source secrets (passwords, tokens, API keys), with Fernet.

All the secrets of one data source are one token: the Fernet encryption (AES-128-CBC with
HMAC-SHA256, timestamped) of their JSON. `SecretBox` holds several keys: the first encrypts,
every one decrypts. Key rotation: put a new key first, restart, `rotate()` every stored token
(`agentflow-datasources rotate-secrets`), then drop the old key.

Nothing here logs or shows a secret or a key: `repr(box)` says how many keys it has.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.i18n import LocalizedError, Message

_UNREADABLE = Message(
    "数据源的密钥无法解密(加密密钥已更换或数据已损坏)",
    "the data source's secrets cannot be decrypted (the encryption key changed, "
    "or the data is damaged)",
)


class SecretsUnreadable(LocalizedError):
    """No configured key opens the token (or what it opens is not secrets)."""

    def __init__(self) -> None:
        super().__init__(_UNREADABLE)


class SecretBox:
    """Encrypts and decrypts the secrets of data sources with a list of Fernet keys."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one Fernet key")
        fernets: list[Fernet] = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.strip().encode("ascii")))
            except (ValueError, UnicodeError) as exc:
                # The key itself is never repeated in the message.
                raise ValueError(
                    f"key {position} of {len(keys)} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes)"
                ) from exc
        self._primary = fernets[0]
        self._fernet = MultiFernet(fernets)
        self._count = len(fernets)

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text."""
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, plain: dict[str, str]) -> str:
        """One token for all the secrets, made with the first key."""
        data = json.dumps(plain, ensure_ascii=False, sort_keys=True).encode("utf-8")
        return self._fernet.encrypt(data).decode("ascii")

    def decrypt(self, token: str) -> dict[str, str]:
        """The secrets in the token; SecretsUnreadable if no key opens it."""
        try:
            data = self._fernet.decrypt(token.encode("ascii"))
            secrets: Any = json.loads(data)
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretsUnreadable from None
        if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
        ):
            raise SecretsUnreadable
        return secrets

    def rotate(self, token: str) -> str:
        """The token re-encrypted with the first key; unchanged if that key already made it."""
        try:
            raw = token.encode("ascii")
        except UnicodeError:
            raise SecretsUnreadable from None
        try:
            self._primary.decrypt(raw)
        except InvalidToken:
            pass
        else:
            return token
        try:
            return self._fernet.rotate(raw).decode("ascii")
        except InvalidToken:
            raise SecretsUnreadable from None

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._count})"

    def __reduce__(self) -> Any:
        raise TypeError("a SecretBox holds keys and is not pickled")
