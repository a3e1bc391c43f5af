"""Request and response bodies of `/api/v1/auth`, as the seed's API document gives them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.security.tokens import Role

USERNAME_PATTERN = r"^[\w.\-]+$"  # \w is Unicode: Chinese names are welcome


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "testuser", "email": "test@example.com", "password": "password123"}
            ]
        }
    )

    username: str = Field(min_length=3, max_length=32, pattern=USERNAME_PATTERN)
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=1, max_length=1024, description="8+ chars, letters and digits")


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
