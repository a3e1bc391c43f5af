"""Config models, how secrets are split, joined, masked and merged, and their encryption."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from pydantic import ValidationError

from services.datasources.configs import (
    CONFIG_MODELS,
    MASK,
    SECRET_PATHS,
    ApiConfig,
    BearerAuth,
    JsonConfig,
    MySQLConfig,
    PostgresConfig,
    join_secrets,
    mask_secrets,
    merge_update,
    parse_config,
    split_secrets,
)
from services.datasources.secrets import SecretBox, SecretsUnreadable

MYSQL = {"host": "db.example.com", "database": "shop", "username": "reader", "password": "pw-1"}
API = {
    "base_url": "https://api.example.com/v1",
    "headers": {"X-Client": "agentflow"},
    "auth": {"type": "bearer", "token": "tok-1"},
}


def _stored(source_type: str, config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """As the application stores a config: validated, dumped, split."""
    dumped = parse_config(source_type, config).model_dump(mode="json")
    return split_secrets(source_type, dumped)


# -- models --------------------------------------------------------------------------------


def test_models_fill_defaults() -> None:
    mysql = MySQLConfig(**MYSQL)
    assert (mysql.port, mysql.ssl, mysql.charset, mysql.connect_timeout) == (
        3306,
        False,
        "utf8mb4",
        None,
    )
    postgres = PostgresConfig(host="10.0.0.5", database="d", username="u")
    assert (postgres.port, postgres.sslmode, postgres.password) == (5432, "prefer", None)
    api = ApiConfig(base_url="http://api.example.com", method="get")
    assert (api.method, api.auth.type, api.timeout, api.headers) == ("GET", "none", 30.0, {})
    assert set(CONFIG_MODELS) == set(SECRET_PATHS) == {"mysql", "postgresql", "api", "json"}


@pytest.mark.parametrize(
    ("source_type", "config"),
    [
        ("mysql", {**MYSQL, "host": "mysql://db.example.com"}),
        ("mysql", {**MYSQL, "host": "db.example.com:3306"}),
        ("mysql", {**MYSQL, "host": "db.example.com/shop"}),
        ("mysql", {**MYSQL, "port": 0}),
        ("mysql", {**MYSQL, "port": 65536}),
        ("mysql", {**MYSQL, "database": ""}),
        ("mysql", {**MYSQL, "unknown": 1}),
        ("postgresql", {**MYSQL, "sslmode": "verify-full"}),
        ("api", {"base_url": "ftp://files.example.com"}),
        ("api", {"base_url": "https://user:pw@api.example.com"}),
        ("api", {"base_url": "api.example.com"}),
        ("api", {**API, "method": "TRACE"}),
        ("api", {**API, "headers": {"Authorization": "Bearer x"}}),
        ("api", {**API, "headers": {"X-Bad": "a\r\nInjected: 1"}}),
        ("api", {**API, "auth": {"type": "oauth"}}),
        ("api", {**API, "auth": {"type": "api_key", "name": "bad header", "value": "v"}}),
        ("api", {**API, "response_path": "data[?"}),
        ("api", {**API, "body": {"a": 1}}),  # a GET has no body
        ("api", {**API, "timeout": 0}),
        ("json", {}),
        ("json", {"data": [1], "file": "a.json"}),
        ("json", {"file": "../a.json"}),
        ("json", {"file": "/etc/passwd"}),
    ],
)
def test_invalid_configs(source_type: str, config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_config(source_type, config)


def test_valid_hosts() -> None:
    for host in ("localhost", "db-1.internal", "10.1.2.3", "::1", "[::1]", "my_db.local"):
        MySQLConfig(**{**MYSQL, "host": host})


def test_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown data source type"):
        parse_config("oracle", {})


# -- split / join / mask -------------------------------------------------------------------


def test_split_and_join() -> None:
    public, secrets = _stored("mysql", MYSQL)
    assert "password" not in public
    assert secrets == {"password": "pw-1"}
    assert parse_config("mysql", join_secrets(public, secrets)) == MySQLConfig(**MYSQL)

    public, secrets = _stored("api", API)
    assert public["auth"] == {"type": "bearer"}
    assert secrets == {"auth.token": "tok-1"}
    assert join_secrets(public, secrets)["auth"] == {"type": "bearer", "token": "tok-1"}

    public, secrets = _stored("mysql", {**MYSQL, "password": None})
    assert secrets == {}
    assert _stored("json", {"data": {"a": 1}}) == ({"data": {"a": 1}, "file": None}, {})


def test_mask() -> None:
    public, secrets = _stored(
        "api", {**API, "auth": {"type": "basic", "username": "u", "password": "p"}}
    )
    shown = mask_secrets("api", join_secrets(public, secrets))
    assert shown["auth"] == {"type": "basic", "username": "u", "password": MASK}
    assert mask_secrets("mysql", {**MYSQL, "password": None})["password"] is None
    assert mask_secrets("mysql", {"host": "h"}) == {"host": "h"}


# -- partial updates -----------------------------------------------------------------------


def test_partial_update_keeps_what_is_not_given() -> None:
    public, secrets = _stored("mysql", MYSQL)
    merged, kept = merge_update("mysql", public, secrets, {"port": 3307})
    assert merged["port"] == 3307
    assert merged["host"] == "db.example.com"
    assert kept == {"password": "pw-1"}


def test_masked_secret_keeps_new_replaces_null_clears() -> None:
    public, secrets = _stored("mysql", MYSQL)
    assert merge_update("mysql", public, secrets, {"password": MASK})[1] == {"password": "pw-1"}
    assert merge_update("mysql", public, secrets, {"password": "pw-2"})[1] == {"password": "pw-2"}
    assert merge_update("mysql", public, secrets, {"password": None})[1] == {}
    merged, _ = merge_update("mysql", public, secrets, {"connect_timeout": None, "port": None})
    assert "port" not in merged  # null: back to the default
    assert parse_config("mysql", merged).port == 3306  # type: ignore[attr-defined]


def test_nested_auth_merges() -> None:
    public, secrets = _stored("api", API)
    merged, kept = merge_update("api", public, secrets, {"auth": {"type": "bearer"}})
    assert kept == {"auth.token": "tok-1"}
    assert merged["auth"] == {"type": "bearer"}
    merged, kept = merge_update("api", public, secrets, {"auth": {"token": MASK}, "timeout": 5})
    assert (kept, merged["timeout"]) == ({"auth.token": "tok-1"}, 5)
    full = parse_config("api", join_secrets(merged, kept))
    assert isinstance(full, ApiConfig)
    assert isinstance(full.auth, BearerAuth)
    assert full.auth.token == "tok-1"
    # Free-form maps are values: given, they replace the old one whole.
    merged, _ = merge_update("api", public, secrets, {"headers": {"X-Other": "1"}})
    assert merged["headers"] == {"X-Other": "1"}


def test_switching_auth_type_drops_the_old_secrets() -> None:
    public, secrets = _stored(
        "api", {**API, "auth": {"type": "basic", "username": "u", "password": "p"}}
    )
    assert secrets == {"auth.password": "p"}
    update = {"auth": {"type": "api_key", "name": "X-Key", "value": "k"}}
    merged, kept = merge_update("api", public, secrets, update)
    assert kept == {"auth.value": "k"}
    assert merged["auth"] == {"type": "api_key", "name": "X-Key"}  # no stale username
    parse_config("api", join_secrets(merged, kept))
    merged, kept = merge_update("api", public, secrets, {"auth": {"type": "bearer", "token": MASK}})
    assert kept == {}  # the mask keeps nothing of another type
    merged, kept = merge_update("api", public, secrets, {"auth": {"type": "none"}})
    assert (merged["auth"], kept) == ({"type": "none"}, {})


def test_json_data_and_file_replace_each_other() -> None:
    public, secrets = _stored("json", {"data": [1, 2]})
    merged, _ = merge_update("json", public, secrets, {"file": "a.json"})
    assert parse_config("json", merged) == JsonConfig(file="a.json")
    merged, _ = merge_update("json", merged, {}, {"data": {"x": 1}})
    assert parse_config("json", merged) == JsonConfig(data={"x": 1})


def test_merge_does_not_touch_its_inputs() -> None:
    public, secrets = _stored("api", API)
    before = (repr(public), repr(secrets))
    merge_update("api", public, secrets, {"auth": {"type": "none"}, "headers": {}})
    assert (repr(public), repr(secrets)) == before


# -- encryption ----------------------------------------------------------------------------


def test_round_trip() -> None:
    box = SecretBox([SecretBox.generate_key()])
    plain = {"password": "密码-1", "auth.token": "tok"}
    token = box.encrypt(plain)
    assert "密码" not in token
    assert "tok" not in token
    assert box.decrypt(token) == plain
    assert box.encrypt(plain) != token  # a fresh IV every time


def test_rotation() -> None:
    old_key, new_key = SecretBox.generate_key(), SecretBox.generate_key()
    old = SecretBox([old_key])
    token = old.encrypt({"password": "pw"})
    rotating = SecretBox([new_key, old_key])  # the new key first, the old one still known
    assert rotating.decrypt(token) == {"password": "pw"}
    rotated = rotating.rotate(token)
    assert rotated != token
    assert rotating.rotate(rotated) == rotated  # already under the first key: unchanged
    assert SecretBox([new_key]).decrypt(rotated) == {"password": "pw"}
    with pytest.raises(SecretsUnreadable):
        old.decrypt(rotated)


def test_unknown_key_or_garbage_is_unreadable() -> None:
    token = SecretBox([SecretBox.generate_key()]).encrypt({"password": "pw"})
    stranger = SecretBox([SecretBox.generate_key()])
    for bad in (token, "not a token", "", token[:-4], "密"):
        with pytest.raises(SecretsUnreadable) as caught:
            stranger.decrypt(bad)
        assert "密钥无法解密" in caught.value.render("zh")
        assert "cannot be decrypted" in caught.value.render("en")
    with pytest.raises(SecretsUnreadable):
        stranger.rotate(token)


def test_config_reprs_hide_secrets() -> None:
    assert "pw-1" not in repr(MySQLConfig(**MYSQL))
    assert "tok-1" not in repr(ApiConfig(**API))
    basic = ApiConfig(**{**API, "auth": {"type": "basic", "username": "u", "password": "pw-2"}})
    key = ApiConfig(**{**API, "auth": {"type": "api_key", "name": "k", "value": "v-3"}})
    assert "pw-2" not in repr(basic)
    assert "v-3" not in repr(key)


def test_keys_and_secrets_stay_out_of_sight() -> None:
    key = SecretBox.generate_key()
    box = SecretBox([key, SecretBox.generate_key()])
    assert repr(box) == "SecretBox(keys=2)"
    assert key not in repr(box)
    assert key not in str(box)
    with pytest.raises(TypeError):
        pickle.dumps(box)
    with pytest.raises(ValueError, match="key 2 of 2") as caught:
        SecretBox([key, "not-a-key"])
    assert "not-a-key" not in str(caught.value)
    with pytest.raises(ValueError, match="at least one"):
        SecretBox([])
