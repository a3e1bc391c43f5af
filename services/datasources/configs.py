"""The config of each data source type, and how its secrets are split off, masked and merged.

A config is validated by its pydantic model (`CONFIG_MODELS`, unknown keys refused). The
values at `SECRET_PATHS` are secrets: `split_secrets` takes them out of the config (the public
part is stored as is, the secrets encrypted, see `secrets.SecretBox`), `join_secrets` puts them
back, `mask_secrets` shows them as `"******"`, and `merge_update` applies a partial update.

Secrets are addressed by dotted names ("password", "auth.token") in the flat dict of secrets.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Final, Literal

import httpx
import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

MASK: Final = "******"

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Credentials belong in `auth`, whose values are encrypted; headers are stored in clear.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie"})

# The rules of the validators below, as JSON Schema for the OpenAPI document (generated
# clients and forms). Each accepts a part of what its validator accepts, never more; written
# for both ECMA-262 (JSON Schema's regex dialect) and Python's `re`.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
HOST_NAME_PATTERN: Final = rf"^{_LABEL}(?:\.{_LABEL})*\.?$"
_HOST_SCHEMA: Final[JsonDict] = {"anyOf": [{"pattern": HOST_NAME_PATTERN}, {"format": "ipv6"}]}
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# httpx reads a host of four numbers as an IPv4 address (and refuses "01.2.3.4"): a name has
# a letter in its last label.
_URL_HOST = (
    rf"(?:{_OCTET}(?:\.{_OCTET}){{3}}"
    r"|(?:[A-Za-z0-9_~-]+\.)*[A-Za-z0-9_~-]*[A-Za-z_~-][A-Za-z0-9_~-]*\.?)"
)
BASE_URL_PATTERN: Final = rf"^https?://{_URL_HOST}(?::[0-9]{{1,5}})?(?:[/?][^#\s\x00-\x1f\x7f]*)?$"
HEADER_TOKEN_PATTERN: Final = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"  # noqa: S105 - not a secret
HEADER_NAME_PATTERN: Final = (  # a token, and no credentials
    r"^(?![Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]$"
    r"|[Pp][Rr][Oo][Xx][Yy]-[Aa][Uu][Tt][Hh][Oo][Rr][Ii][Zz][Aa][Tt][Ii][Oo][Nn]$"
    r"|[Cc][Oo][Oo][Kk][Ii][Ee]$)[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
)
_HEADERS_SCHEMA: Final[JsonDict] = {
    "propertyNames": {"pattern": HEADER_NAME_PATTERN},
    "additionalProperties": {"type": "string", "pattern": r"^[^\r\n\x00]*$"},
}
RELATIVE_PATH_PATTERN: Final = r"^(?!/)(?![\s\S]*(?:^|/)\.\.(?:/|$))[^\\\x00]+$"


class _Config(BaseModel):
    # Strings are kept as given (a password may well end with a space); names are checked.
    model_config = ConfigDict(extra="forbid")


def _check_host(value: str) -> str:
    """A host name or an IP address: no scheme, port, path or user."""
    value = value.strip()
    candidate = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    name = value.rstrip(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(p) for p in name.split(".")):
        raise ValueError("must be a host name or an IP address, without scheme, port or path")
    return value


class SqlConfig(_Config):
    """What every SQL database needs: where it is, which database, and who connects."""

    host: str = Field(
        min_length=1,
        max_length=253,
        description="Host name or IP address.",
        json_schema_extra=_HOST_SCHEMA,
    )
    port: int = Field(ge=1, le=65535)
    database: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=128)
    password: str | None = Field(
        default=None,
        max_length=1024,
        repr=False,
        description="Secret: stored encrypted, shown masked.",
    )
    connect_timeout: float | None = Field(
        default=None, gt=0, le=120, description="Seconds; unset: the service's default."
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return _check_host(value)


class MySQLConfig(SqlConfig):
    """MySQL or MariaDB."""

    port: int = Field(default=3306, ge=1, le=65535)
    ssl: bool = Field(default=False, description="TLS with certificate verification.")
    charset: str = Field(default="utf8mb4", pattern=r"^[A-Za-z0-9_]{1,32}$")


class PostgresConfig(SqlConfig):
    """PostgreSQL."""

    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1, max_length=63)
    sslmode: Literal["disable", "prefer", "require"] = "prefer"


class NoAuth(_Config):
    # The discriminator must be sent (`{}` is refused): only a missing `auth` means none.
    model_config = ConfigDict(json_schema_extra={"required": ["type"]})

    type: Literal["none"] = "none"


class BearerAuth(_Config):
    """`Authorization: Bearer <token>`."""

    type: Literal["bearer"]
    token: str | None = Field(default=None, max_length=8192, repr=False, description="Secret.")


class BasicAuth(_Config):
    """HTTP basic authentication."""

    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=256)
    password: str | None = Field(default=None, max_length=1024, repr=False, description="Secret.")


class ApiKeyAuth(_Config):
    """A key sent as a header or as a query parameter named `name`."""

    type: Literal["api_key"]
    name: str = Field(min_length=1, max_length=256)
    value: str | None = Field(default=None, max_length=8192, repr=False, description="Secret.")
    location: Literal["header", "query"] = "header"

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["location"], "properties": {"location": {"const": "query"}}},
                {"properties": {"name": {"pattern": HEADER_TOKEN_PATTERN}}},
            ]
        }
    )

    @model_validator(mode="after")
    def _header_name(self) -> ApiKeyAuth:
        if self.location == "header" and not _HEADER_NAME.match(self.name):
            raise ValueError(f"{self.name!r} is not a valid header name")
        return self


ApiAuth = Annotated[NoAuth | BearerAuth | BasicAuth | ApiKeyAuth, Field(discriminator="type")]


class ApiConfig(_Config):
    """An HTTP API answering JSON; requests go through the outbound guard."""

    # A body needs a method that has one.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"properties": {"body": {"type": "null"}}},
                {
                    "required": ["method"],
                    "properties": {"method": {"enum": ["POST", "PUT", "PATCH"]}},
                },
            ]
        }
    )

    base_url: str = Field(
        min_length=1,
        max_length=2048,
        description="http(s) URL, without credentials or fragment.",
        json_schema_extra={"pattern": BASE_URL_PATTERN},
    )
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Sent with every request; stored in clear: put credentials in `auth`.",
        json_schema_extra=_HEADERS_SCHEMA,
    )
    auth: ApiAuth = Field(default_factory=NoAuth)
    query_params: dict[str, str] = Field(
        default_factory=dict, description="Values may hold {name} templates."
    )
    body: Any = Field(
        default=None,
        description="JSON for POST/PUT/PATCH; strings may hold {name} templates, and a string "
        'that is exactly "{name}" is replaced by the parameter\'s value itself.',
    )
    response_path: str | None = Field(
        default=None,
        max_length=2000,
        description="JMESPath selecting the rows in the response.",
        json_schema_extra={"format": "jmespath"},
    )
    timeout: float = Field(default=30.0, gt=0, le=300, description="Seconds.")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        try:
            url = httpx.URL(value)
        except (httpx.InvalidURL, ValueError) as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if url.scheme not in ("http", "https"):
            raise ValueError("must start with http:// or https://")
        if not url.host:
            raise ValueError("has no host")
        if url.userinfo:
            raise ValueError("must not hold credentials: put them in auth")
        if url.fragment:
            raise ValueError("must not have a fragment (#...)")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _CREDENTIAL_HEADERS:
                raise ValueError(f"{name} holds credentials: use auth, whose values are secret")
            if any(c in text for c in "\r\n\0"):
                raise ValueError(f"the value of {name} has a line break")
        return value

    @field_validator("response_path")
    @classmethod
    def _jmespath(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            jmespath.compile(value)
        except JMESPathError as exc:
            raise ValueError(f"not a valid JMESPath expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _body_needs_a_method_with_body(self) -> ApiConfig:
        if self.body is not None and self.method in ("GET", "DELETE"):
            raise ValueError(f"a {self.method} request has no body: use POST, PUT or PATCH")
        return self


class JsonConfig(_Config):
    """A JSON document: inline (`data`) or a file under the service's JSON directory."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["data"],
                    "properties": {"data": {"not": {"type": "null"}}, "file": {"type": "null"}},
                },
                {
                    "required": ["file"],
                    "properties": {"file": {"type": "string"}, "data": {"type": "null"}},
                },
            ]
        }
    )

    data: Any = Field(default=None, description="The document itself.")
    file: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="A path relative to the JSON directory; no absolute paths or '..'.",
        json_schema_extra={"pattern": RELATIVE_PATH_PATTERN},
    )

    @field_validator("file")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "\0" in value or "\\" in value:
            raise ValueError("must be a plain relative path")
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError("must be relative to the JSON directory, without '..'")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> JsonConfig:
        if (self.data is None) == (self.file is None):
            raise ValueError("give exactly one of data (the document) or file (its path)")
        return self


CONFIG_MODELS: Final[dict[str, type[BaseModel]]] = {
    "mysql": MySQLConfig,
    "postgresql": PostgresConfig,
    "api": ApiConfig,
    "json": JsonConfig,
}

SECRET_PATHS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "mysql": (("password",),),
    "postgresql": (("password",),),
    "api": (("auth", "token"), ("auth", "password"), ("auth", "value")),
    "json": (),
}

# Nested objects that a partial update merges into (the others are values, replaced whole).
_MERGED_OBJECTS: Final[dict[str, frozenset[str]]] = {"api": frozenset({"auth"})}
# Fields of which at most one is set: giving one in an update drops the others.
_EXCLUSIVE: Final[dict[str, tuple[frozenset[str], ...]]] = {"json": (frozenset({"data", "file"}),)}


def _model(source_type: str) -> type[BaseModel]:
    try:
        return CONFIG_MODELS[source_type]
    except KeyError:
        raise ValueError(f"unknown data source type {source_type!r}") from None


def _secret_paths(source_type: str) -> tuple[tuple[str, ...], ...]:
    _model(source_type)
    return SECRET_PATHS[source_type]


def parse_config(source_type: str, config: dict[str, Any]) -> BaseModel:
    """The config as its type's model; pydantic's ValidationError if it is not valid."""
    return _model(source_type).model_validate(config)


def _lookup(config: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], str] | None:
    """The dict holding the last key of `path`, and that key; None if a parent is missing."""
    node: Any = config
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return None
    return node, path[-1]


def split_secrets(
    source_type: str, config: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """(the config without its secrets, the secrets by dotted name); None values are dropped.

    Meant for a validated config (`model_dump(mode="json")`), where secrets are strings."""
    public = copy.deepcopy(config)
    secrets: dict[str, str] = {}
    for path in _secret_paths(source_type):
        found = _lookup(public, path)
        if found is None or found[1] not in found[0]:
            continue
        parent, key = found
        value = parent.pop(key)
        if value is not None:
            secrets[".".join(path)] = value if isinstance(value, str) else str(value)
    return public, secrets


def join_secrets(public: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    """The config with its secrets put back at their dotted names (parents made if missing)."""
    config = copy.deepcopy(public)
    for name, value in secrets.items():
        node = config
        *parents, last = name.split(".")
        for key in parents:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[last] = value
    return config


def mask_secrets(source_type: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config with every secret that is set shown as "******"."""
    masked = copy.deepcopy(config)
    for path in _secret_paths(source_type):
        found = _lookup(masked, path)
        if found is not None and found[0].get(found[1]) is not None:
            found[0][found[1]] = MASK
    return masked


def merge_update(
    source_type: str,
    current_public: dict[str, Any],
    current_secrets: dict[str, str],
    update: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Apply a partial config update; returns (public config, secrets), still to be validated.

    - a key given replaces the stored value; a key not given keeps it;
    - null removes the key, so the field falls back to its default (for a secret: cleared);
    - nested objects (`auth` of an api source) are merged key by key the same way, but an
      `auth` of another `type` replaces the old one whole, dropping the old type's secrets;
    - a secret given as "******" (as shown by the API) or not given keeps the stored secret;
    - free-form values (headers, query_params, body, data) are replaced whole, not merged;
    - for a json source, giving `data` drops `file` and the other way round.
    """
    _model(source_type)
    secret_names = {".".join(p) for p in SECRET_PATHS[source_type]}
    merged_objects = _MERGED_OBJECTS.get(source_type, frozenset())
    public = copy.deepcopy(current_public)
    secrets = dict(current_secrets)

    for group in _EXCLUSIVE.get(source_type, ()):
        given = [key for key in group if update.get(key) is not None]
        for key in group.difference(given) if given else ():
            public.pop(key, None)

    def drop_secrets_under(prefix: str) -> None:
        for name in [n for n in secrets if n.startswith(prefix + ".")]:
            del secrets[name]

    def apply(target: dict[str, Any], changes: dict[str, Any], prefix: str, merge: bool) -> None:
        for key, value in changes.items():
            name = f"{prefix}{key}"
            if name in secret_names:
                if value is None:
                    secrets.pop(name, None)
                elif isinstance(value, str):
                    if value != MASK:
                        secrets[name] = value
                else:  # not a string: left in the config for validation to refuse
                    target[key] = value
                continue
            if value is None:
                target.pop(key, None)
                drop_secrets_under(name)
                continue
            current = target.get(key)
            if merge and key in merged_objects and isinstance(value, dict):
                if not isinstance(current, dict) or (
                    "type" in value and value["type"] != current.get("type")
                ):
                    current = {}
                    drop_secrets_under(name)
                target[key] = current
                apply(current, value, name + ".", merge=False)
                continue
            target[key] = copy.deepcopy(value)

    apply(public, update, "", merge=True)
    return public, secrets
