from __future__ import annotations

import pytest

from shared.i18n import LocalizedError, Message, pick_language


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("fr-FR,en;q=0.5", "en"),
        ("fr-FR", "zh"),
        ("en;q=0.3,zh;q=0.7", "zh"),
        ("en;q=0", "zh"),
        ("en;q=abc,zh", "zh"),
        ("EN-gb", "en"),
    ],
)
def test_pick_language(header: str | None, expected: str) -> None:
    assert pick_language(header) == expected


def test_message_renders_each_language_with_params() -> None:
    message = Message("至少 {n} 个字符", "at least {n} characters")
    assert message.render("zh", n=8) == "至少 8 个字符"
    assert message.render("en", n=8) == "at least 8 characters"


def test_a_reason_given_as_a_message_is_rendered_in_the_readers_language() -> None:
    outer = Message("服务不可用:{detail}", "the service is unavailable: {detail}")
    reason = Message("无法连接", "it could not be reached")
    error = LocalizedError(outer, detail=reason)
    assert error.render("zh") == "服务不可用:无法连接"
    assert error.render("en") == "the service is unavailable: it could not be reached"
    assert str(error) == "the service is unavailable: it could not be reached"
