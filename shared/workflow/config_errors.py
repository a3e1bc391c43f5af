"""Errors our node-config validators raise, with both languages of their message.

Validators raise `config_error(kind, ...)`, a pydantic error whose type is `kind`; the
validation report looks `kind` up here to speak the user's language. Pydantic's own error
types are translated in `validation_messages.py`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic_core import PydanticCustomError

from shared.i18n import Message

CONFIG_MESSAGES: Final[dict[str, Message]] = {
    "invalid_identifier": Message(
        "{value} 不是合法的名称(字母或下划线开头,只含字母、数字、下划线)",
        "{value} is not a valid name (a letter or _ first, then letters, digits, _)",
    ),
    "reserved_name": Message(
        "{value} 是保留名称,不能使用(保留:{reserved})",
        "{value} is reserved and cannot be used (reserved: {reserved})",
    ),
    "duplicate_name": Message("名称 {value} 重复", "duplicate name {value}"),
    "default_type_mismatch": Message(
        "默认值与类型 {type} 不符", "the default value does not match type {type}"
    ),
    "model_required": Message(
        "提供方 {provider} 没有默认模型,请填写 model",
        "provider {provider} has no default model: set model",
    ),
    "invalid_expression": Message("表达式无效:{detail}", "invalid expression: {detail}"),
    "required_for_mode": Message(
        "模式 {mode} 需要填写此字段", "this field is required in mode {mode}"
    ),
    "invalid_items_path": Message(
        # No parameters, so no str.format: single braces are literal here.
        "items_path 必须是一个引用,如 items、input.items 或 {input.items}",
        "items_path must be one reference such as items, input.items or {input.items}",
    ),
    "output_ambiguous": Message(
        "mapping 和 value 只能填写一个", "set either mapping or value, not both"
    ),
    "empty_key": Message("映射的键不能为空", "mapping keys cannot be empty"),
}


def config_error(kind: str, **context: Any) -> PydanticCustomError:
    """A pydantic error of type `kind`, its English text from CONFIG_MESSAGES."""
    # Rendered here with str.format (pydantic's own templating knows no `{{` escapes); the
    # context still travels with the error so the report can render Chinese.
    return PydanticCustomError(kind, CONFIG_MESSAGES[kind].render("en", **context), context)
