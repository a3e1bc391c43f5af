"""Request and response bodies of `/api/v1/auth`, as the seed's API document gives them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Form
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.auth.passwords import MAX_LENGTH, MIN_LENGTH
from shared.security.tokens import Role

USERNAME_PATTERN = r"^[\w.\-]+$"  # \w is Unicode: Chinese names are welcome
# Letters of the scripts people here write (Latin, Greek, Cyrillic, kana, CJK, Hangul): each
# is a letter to the strength check (str.isalpha, tests/unit/test_openapi_schemas.py), which
# also counts the letters of every other script. Spelled out because `\w` and `[^\W\d_]` mean
# ASCII to an ECMA-262 engine (JSON Schema's) and take digits like "²" in Python's.
_LETTERS = (
    r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0391-\u03a1\u03a3-\u03a9\u03b1-\u03c9"
    r"\u0400-\u0481\u048a-\u04ff\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3"
)
# At least one letter and one digit, anywhere: what a form can check before it sends.
PASSWORD_PATTERN = rf"^(?=[\s\S]*[{_LETTERS}])(?=[\s\S]*[0-9])"
# Addresses email-validator takes (EmailStr): a dot-atom of at most 63 characters before the
# @, labels of letters, digits and single hyphens, a top-level domain ending in a letter and
# none of the special-use ones (`.test`, `.local`, ...), which it refuses.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,30}"
_SPECIAL_USE = "|".join(
    "".join(f"[{c.upper()}{c}]" for c in name) + "$"
    for name in ("arpa", "invalid", "local", "localhost", "onion", "test")
)
EMAIL_PATTERN = (
    rf"^{_ATEXT}(?:\.?{_ATEXT}){{0,31}}@(?:{_LABEL}\.)+(?!{_SPECIAL_USE})(?:{_LABEL}-?)?[A-Za-z]$"
)


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "testuser", "email": "test@example.com", "password": "password123"}
            ]
        }
    )

    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    email: EmailStr = Field(max_length=254, json_schema_extra={"pattern": EMAIL_PATTERN})
    # Validated by the strength check, not here, so that every refusal is WEAK_PASSWORD with
    # its reason; the document states the same rules for generated clients and forms.
    password: str = Field(
        min_length=1,
        max_length=1024,
        description=f"{MIN_LENGTH} to {MAX_LENGTH} characters, with at least one letter and one "
        "digit; not one of the commonest passwords, and not containing the username. "
        "Otherwise 422 WEAK_PASSWORD naming the rule.",
        json_schema_extra={
            "minLength": MIN_LENGTH,
            "maxLength": MAX_LENGTH,
            "pattern": PASSWORD_PATTERN,
        },
    )


class LoginForm:
    """The login form: OAuth2's password flow, as the seed's clients and Swagger UI's
    **Authorize** send it (`application/x-www-form-urlencoded`). Other fields of that flow
    (`scope`, `client_id`, ...) are ignored."""

    def __init__(
        self,
        # An empty field is a missing one to FastAPI's form parsing (422): the document says so.
        username: Annotated[str, Form(min_length=1, description="The username or the email.")],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        # Optional, but never null: a form has no null (an empty field is a missing one).
        grant_type: Annotated[str, Form(pattern="^password$")] = "password",
    ) -> None:
        self.username = username
        self.password = password
        self.grant_type = grant_type


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str
    role: Role
    created_at: datetime


class MeOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str
    role: Role


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")
