"""Tools of the security suites: a platform of the module's own, forged tokens, the public
operations of `/openapi.json`, little HTTP servers standing for private targets, and a
scanner that looks for secrets (and their obvious encodings) in everything it is shown."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import jwt

from tests.support.figures import LONG
from tests.support.http_servers import QuietHandler, start_server, stop_server
from tests.support.stores import BACKENDS

# The short suites run on SQLite only; `make security` runs them on both stores.
SUITE_BACKENDS = BACKENDS if LONG else ["sqlite"]
HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def documented_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation the public document describes, probes excluded."""
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/api/")
        for method in item
        if method in HTTP_METHODS
    }


# -- tokens ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forged_tokens(secret: str, valid_token: str) -> dict[str, str | None]:
    """Authorization header values that must all be refused with 401 (None: no header).

    Built from a valid token's claims, so each differs from a good one in one way only."""
    claims: dict[str, Any] = jwt.decode(valid_token, options={"verify_signature": False})
    now = int(time.time())
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    header, _, signature = valid_token.split(".")
    as_admin = {**claims, "role": "admin", "sub": str(uuid.uuid4())}
    tampered = ".".join((header, _b64(json.dumps(as_admin).encode()), signature))
    unsigned = jwt.encode(as_admin, key=None, algorithm="none")  # type: ignore[arg-type]
    no_expiry = {k: v for k, v in claims.items() if k != "exp"}

    def bearer(token: str) -> str:
        return f"Bearer {token}"

    return {
        "missing": None,
        "bearer without token": "Bearer",
        "not a JWT": bearer("not-a-jwt"),
        "other scheme": f"Basic {valid_token}",
        "expired": bearer(jwt.encode(expired, secret, algorithm="HS256")),
        "alg none": bearer(unsigned),
        "alg none, no signature dot": bearer(unsigned.rstrip(".")),
        "wrong key": bearer(jwt.encode(as_admin, "x" * 48, algorithm="HS256")),
        "tampered payload": bearer(tampered),
        "other algorithm": bearer(jwt.encode(claims, secret, algorithm="HS512")),
        "foreign issuer": bearer(jwt.encode({**claims, "iss": "elsewhere"}, secret)),
        "no expiry": bearer(jwt.encode(no_expiry, secret, algorithm="HS256")),
        "unknown role": bearer(jwt.encode({**claims, "role": "root"}, secret)),
    }


# -- little HTTP servers -------------------------------------------------------------------------


@dataclass
class LocalServer:
    """An HTTP server on a given loopback address: `/redirect?to=URL` answers 302 to URL,
    anything else 200 with `{"reached": path}`. `hits` lists every path requested."""

    host: str
    port: int = 0
    hits: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalServer:
        hits = self.hits

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                parsed = urllib.parse.urlsplit(self.path)
                target = urllib.parse.parse_qs(parsed.query).get("to")
                if parsed.path == "/redirect" and target:
                    self.reply(302, b"", headers={"location": target[0]})
                    return
                self.reply(200, {"reached": self.path})

            do_POST = do_GET

        self._server = start_server(Handler, self.host, self.port)
        self.port = self._server.server_address[1]
        return self

    def stop(self) -> None:
        if self._server is not None:
            stop_server(self._server)


# -- secrets -----------------------------------------------------------------------------------


def encodings(secret: str) -> set[str]:
    """The secret as it might slip out: plain, JSON-escaped, URL-encoded, base64, hex."""
    raw = secret.encode()
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        raw.hex(),
    }
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        forms.add(encoded.decode("ascii"))
        forms.add(encoded.decode("ascii").rstrip("="))
    return {form for form in forms if len(form) >= 8}


@dataclass
class SecretScanner:
    """Counts what it scanned per kind and remembers every place a secret showed up."""

    secrets: dict[str, str]
    scanned: dict[str, int] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)
    _forms: dict[str, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._forms = {name: encodings(value) for name, value in self.secrets.items()}

    def scan(self, kind: str, where: str, text: str, units: int = 1) -> None:
        self.scanned[kind] = self.scanned.get(kind, 0) + units
        for name, forms in self._forms.items():
            for form in forms:
                if form in text:
                    at = text.index(form)
                    context = text[max(0, at - 60) : at + len(form) + 60].replace(form, "<HERE>")
                    self.leaks.append(f"{name} in {kind} {where}: …{context}…")
                    break

    def scan_lines(self, kind: str, where: str, lines: Iterable[str]) -> None:
        counted = list(lines)
        self.scan(kind, where, "\n".join(counted), units=len(counted))
