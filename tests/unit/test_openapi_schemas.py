"""The rules request schemas state for generated clients and forms never promise more than the
services accept: every string a documented pattern allows passes the validator it describes.

The patterns are written for JSON Schema's regex dialect (ECMA-262) and Python's `re` alike;
hypothesis draws from them with Python's. tests/integration/test_openapi_conformance.py checks
whole requests against the running platform.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.auth.passwords import MAX_LENGTH, MIN_LENGTH, WeakPassword, check_password_strength
from services.auth.schemas import _LETTERS, EMAIL_PATTERN, PASSWORD_PATTERN, RegisterRequest
from services.datasources.configs import (
    BASE_URL_PATTERN,
    HEADER_NAME_PATTERN,
    HOST_NAME_PATTERN,
    RELATIVE_PATH_PATTERN,
    ApiConfig,
    JsonConfig,
    MySQLConfig,
)
from services.datasources.schemas import DataSourceCreate
from services.workflows.schemas import ImportIn
from shared.workflow.model import Node
from shared.workflow.nodes import IDENTIFIER_SCHEMA, check_identifier

SOME = settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def matching(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def test_every_letter_the_password_pattern_names_is_a_letter_to_the_strength_check() -> None:
    named = re.compile(f"[{_LETTERS}]")
    letters = [chr(c) for c in range(0x10000) if named.fullmatch(chr(c))]
    assert len(letters) > 20_000  # Latin, Greek, Cyrillic, kana, CJK, Hangul
    assert all(c.isalpha() for c in letters)


@SOME
@given(password=matching(PASSWORD_PATTERN[1:] + r"[\s\S]*").filter(
    lambda p: MIN_LENGTH <= len(p) <= MAX_LENGTH
))  # fmt: skip
def test_a_password_the_schema_allows_is_strong_enough(password: str) -> None:
    try:
        check_password_strength(password, "someone")
    except WeakPassword:
        # The two rules a pattern cannot state (the document says them in words).
        assert password.casefold() in _common() or "someone" in password.casefold()


def _common() -> frozenset[str]:
    from services.auth import passwords

    common: frozenset[str] = passwords._COMMON
    return common


def test_the_documented_password_rules_are_the_strength_checks() -> None:
    schema = RegisterRequest.model_json_schema()["properties"]["password"]
    assert (schema["minLength"], schema["maxLength"]) == (MIN_LENGTH, MAX_LENGTH)
    for weak in ("short1", "onlyletters", "1234567890"):
        assert len(weak) < MIN_LENGTH or not re.match(PASSWORD_PATTERN, weak)
    assert re.match(PASSWORD_PATTERN, "密码密码密码12")


@SOME
@given(email=matching(EMAIL_PATTERN).filter(lambda e: len(e) <= 254))
def test_an_email_the_schema_allows_is_valid(email: str) -> None:
    validate_email(email, check_deliverability=False)


def test_the_email_pattern_takes_ordinary_addresses() -> None:
    for email in ("test@example.com", "first.last+tag@mail.example.cn", "a@b.co"):
        assert re.match(EMAIL_PATTERN, email), email
    for email in ("a@b.test", "a@b.LOCAL", "a..b@c.com", "a@b", "a@b.c1"):
        assert not re.match(EMAIL_PATTERN, email), email


@SOME
@given(
    host=st.one_of(
        matching(HOST_NAME_PATTERN).filter(lambda h: len(h) <= 253), st.ip_addresses(v=6).map(str)
    )
)
def test_a_database_host_the_schema_allows_is_taken(host: str) -> None:
    MySQLConfig(host=host, database="d", username="u")


@SOME
@given(url=matching(BASE_URL_PATTERN).filter(lambda u: len(u) <= 2048))
def test_a_base_url_the_schema_allows_is_taken(url: str) -> None:
    ApiConfig(base_url=url)


@SOME
@given(name=matching(HEADER_NAME_PATTERN))
def test_a_header_name_the_schema_allows_is_taken(name: str) -> None:
    ApiConfig(base_url="http://api.example.com", headers={name: "value"})


def test_credential_headers_are_left_out_of_the_schema() -> None:
    for name in ("Authorization", "COOKIE", "proxy-authorization"):
        assert not re.match(HEADER_NAME_PATTERN, name)
        with pytest.raises(ValidationError):
            ApiConfig(base_url="http://api.example.com", headers={name: "value"})


@SOME
@given(path=matching(RELATIVE_PATH_PATTERN).filter(lambda p: len(p) <= 1024))
def test_a_json_file_path_the_schema_allows_is_taken(path: str) -> None:
    JsonConfig(file=path)


@SOME
@given(name=matching(str(IDENTIFIER_SCHEMA["pattern"])).filter(lambda n: len(n) <= 64))
def test_an_identifier_the_schema_allows_is_taken(name: str) -> None:
    check_identifier(name)


def _documented(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(ref_template="#/$defs/{model}")
    return schema


def test_a_data_source_is_documented_per_type() -> None:
    schema = _documented(DataSourceCreate)
    assert set(schema["discriminator"]["mapping"]) == {"mysql", "postgresql", "api", "json"}
    mysql = schema["$defs"]["NewMySQLSource"]
    assert mysql["properties"]["config"] == {"$ref": "#/$defs/MySQLConfig"}
    assert schema["$defs"]["MySQLConfig"]["additionalProperties"] is False


def test_a_node_is_documented_per_type_and_validated_as_any_node() -> None:
    schema = _documented(Node)
    assert schema["discriminator"]["propertyName"] == "type"
    llm = schema["$defs"]["LlmNode"]
    assert llm["properties"]["data"] == {"$ref": "#/$defs/LLMData"}
    assert "prompt" in schema["$defs"]["LLMData"]["required"]
    # Drafts stay storable: validation takes any type and any data.
    Node.model_validate({"id": "x", "type": "not-yet-chosen", "data": {"anything": 1}})


def test_an_import_is_documented_as_the_export_format() -> None:
    workflow = _documented(ImportIn)["properties"]["workflow"]
    assert workflow["properties"]["format_version"]["maximum"] == 1
    assert {"format_version", "name"} <= set(workflow["required"])
