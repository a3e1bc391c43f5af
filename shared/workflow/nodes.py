"""One pydantic model per node type's `data`. docs/workflow-model.md documents every field.

Config fields are `extra="forbid"` so a typo (`temprature`) is reported, not ignored. Besides
the fields below, `data` may hold `label`, `description`, and any key starting with `ui` or
`_`: editors keep display state there (`uiCollapsed`, `_width`). Those keys are dropped before
validation (they stay in the stored node) and mean nothing to execution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Final, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict, JsonValue

from shared.workflow.config_errors import config_error
from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.policy import OnError, RetryPolicy
from shared.workflow.providers import DEFAULT_MODELS, Provider
from shared.workflow.templates import single_reference
from shared.workflow.tools import Tool

# Names a loop's item variable may not take: they already mean something in a template.
RESERVED_NAMES: Final = frozenset({"input", "value", "index"})
# For the OpenAPI document: the names `check_identifier` takes, as far as a JSON Schema
# pattern (ECMA-262, ASCII) can say it; Python identifiers in other scripts are taken too.
IDENTIFIER_SCHEMA: Final[JsonDict] = {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 64}
_RESERVED_LIST: Final[list[JsonValue]] = [*sorted(RESERVED_NAMES)]
# Display state editors keep in `data` (dropped before validation, kept in the node).
UI_KEYS_SCHEMA: Final[JsonDict] = {"patternProperties": {"^(ui|_)": {}}}
BaseUrl = Annotated[str, StringConstraints(pattern=r"^https?://\S+$", max_length=2048)]
FieldType = Literal["string", "number", "integer", "boolean", "object", "array"]
Template = Annotated[str, StringConstraints(max_length=100_000)]


def _is_ui_key(key: object) -> bool:
    return isinstance(key, str) and (key.startswith("ui") or key.startswith("_"))


def check_identifier(value: str) -> str:
    if not (value.isidentifier() and len(value) <= 64):
        raise config_error("invalid_identifier", value=value)
    return value


def value_matches_type(value: Any, field_type: FieldType) -> bool:
    """Whether a JSON value is of a declared input type (booleans are not numbers)."""
    if field_type == "string":
        return isinstance(value, str)
    if field_type == "boolean":
        return isinstance(value, bool)
    if field_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if field_type == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if field_type == "object":
        return isinstance(value, dict)
    return isinstance(value, list)


class NodeData(BaseModel):
    """What every node's `data` may hold: display text and the execution policy."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=UI_KEYS_SCHEMA)

    label: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    timeout: float = Field(default=30, gt=0, le=86400, description="Seconds per attempt.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    on_error: OnError = "fail"
    default_output: Any = Field(
        default=None, description='The output used when on_error is "continue" and it fails.'
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_ui_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if not _is_ui_key(key)}
        return data


class StartData(NodeData):
    timeout: float = Field(default=10, gt=0, le=86400)


class EndData(NodeData):
    timeout: float = Field(default=10, gt=0, le=86400)
    output: Any = Field(
        default=None, description="Template or mapping of the execution's output_data."
    )


class InputField(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, json_schema_extra=IDENTIFIER_SCHEMA)]
    type: FieldType = "string"
    required: bool = False
    default: Any = Field(default=None, description="Of the field's `type` when given.")
    label: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)

    _check_name = field_validator("name")(check_identifier)

    @model_validator(mode="after")
    def _default_matches_type(self) -> InputField:
        if self.default is not None and not value_matches_type(self.default, self.type):
            raise config_error("default_type_mismatch", type=self.type)
        return self


def _check_unique(names: Iterable[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise config_error("duplicate_name", value=name)
        seen.add(name)


class InputData(NodeData):
    timeout: float = Field(default=10, gt=0, le=86400)
    fields: list[InputField] = Field(
        default_factory=list, max_length=200, description="Names are unique."
    )

    @field_validator("fields")
    @classmethod
    def _unique_names(cls, fields: list[InputField]) -> list[InputField]:
        _check_unique(f.name for f in fields)
        return fields


# Providers with no default model need `model` (the OpenAPI document says so too).
_NEEDS_MODEL: Final[list[JsonValue]] = [
    *sorted(name for name, model in DEFAULT_MODELS.items() if model is None)
]


class ModelNodeData(NodeData):
    """What llm and agent nodes share: which model, and what to ask it."""

    model_config = ConfigDict(
        json_schema_extra={
            **UI_KEYS_SCHEMA,
            "if": {"required": ["provider"], "properties": {"provider": {"enum": _NEEDS_MODEL}}},
            "then": {"required": ["model"], "properties": {"model": {"type": "string"}}},
        }
    )

    provider: Provider = "deepseek"
    model: str | None = Field(
        default=None, min_length=1, max_length=200, validate_default=True,
        description="None: the provider's default model.",
    )  # fmt: skip
    base_url: BaseUrl | None = Field(
        default=None, description="Overrides <PROVIDER>_BASE_URL for this node."
    )
    prompt: Template = Field(min_length=1)
    system_prompt: Template | None = None
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("model")
    @classmethod
    def _model_known(cls, model: str | None, info: ValidationInfo) -> str | None:
        provider = info.data.get("provider")
        if model is None and provider is not None and DEFAULT_MODELS.get(provider) is None:
            raise config_error("model_required", provider=provider)
        return model

    @property
    def effective_model(self) -> str:
        return self.model or DEFAULT_MODELS[self.provider] or ""


class LLMData(ModelNodeData):
    timeout: float = Field(default=120, gt=0, le=86400)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = Field(default=True, description="Stream text chunks to the WebSocket.")
    response_format: Literal["text", "json"] = "text"


class AgentData(ModelNodeData):
    timeout: float = Field(default=600, gt=0, le=86400)
    tools: list[Tool] = Field(default_factory=list, max_length=20)
    max_iterations: int = Field(default=5, ge=1, le=20)

    @field_validator("tools")
    @classmethod
    def _unique_tool_names(cls, tools: list[Tool]) -> list[Tool]:
        _check_unique(t.tool_name for t in tools)
        return tools


class ConditionData(NodeData):
    timeout: float = Field(default=10, gt=0, le=86400)
    expression: str = Field(
        min_length=1,
        description="A condition expression, e.g. `{value} > 10` (docs/workflow-model.md).",
    )

    @field_validator("expression")
    @classmethod
    def _compiles(cls, expression: str) -> str:
        try:
            compile_condition(expression)
        except ExpressionError as exc:
            raise config_error("invalid_expression", detail=str(exc)) from exc
        return expression


def _required_in_mode(mode: str, field: str, *, default_mode: bool = False) -> JsonDict:
    """JSON Schema: in `mode`, `field` is given and not null."""
    when: JsonDict = {"properties": {"mode": {"const": mode}}}
    if not default_mode:
        when["required"] = ["mode"]
    return {
        "if": when,
        "then": {"required": [field], "properties": {field: {"not": {"type": "null"}}}},
    }


class TransformData(NodeData):
    model_config = ConfigDict(
        json_schema_extra={
            **UI_KEYS_SCHEMA,
            "allOf": [
                _required_in_mode("template", "template", default_mode=True),
                _required_in_mode("jmespath", "expression"),
                _required_in_mode("mapping", "mapping"),
                _required_in_mode("data_source", "data_source_id"),
            ],
        }
    )

    mode: Literal["template", "jmespath", "mapping", "data_source"] = "template"
    template: Any = Field(default=None, validate_default=True)
    source: Any = Field(default="{value}", description="What the JMESPath expression reads.")
    expression: str | None = Field(default=None, max_length=10_000, validate_default=True)
    mapping: dict[str, Any] | None = Field(default=None, validate_default=True)
    # Mode data_source: a read-only query on one of the owner's data sources. The query text
    # is never a template (values go in as bound parameters, so no injection through them).
    data_source_id: str | None = Field(default=None, max_length=200, validate_default=True)
    query: str = Field(default="", max_length=100_000)
    parameters: dict[str, Any] | list[Any] | None = None
    max_rows: int | None = Field(default=None, ge=1, le=100_000)

    # Fields of the other modes may stay (an editor keeps them when the mode is switched);
    # only the current mode's field is required.
    @field_validator("template", "expression", "mapping", "data_source_id")
    @classmethod
    def _required_by_mode(cls, value: Any, info: ValidationInfo) -> Any:
        mode = info.data.get("mode")
        wanted = {
            "template": "template",
            "jmespath": "expression",
            "mapping": "mapping",
            "data_source": "data_source_id",
        }
        if mode is not None and wanted[mode] == info.field_name and value is None:
            raise config_error("required_for_mode", mode=mode)
        return value

    @field_validator("expression")
    @classmethod
    def _jmespath_compiles(cls, expression: str | None) -> str | None:
        if expression is not None:
            try:
                jmespath.compile(expression)
            except JMESPathError as exc:
                detail = " ".join(line.strip() for line in str(exc).splitlines())
                raise config_error("invalid_expression", detail=detail) from exc
        return expression

    @field_validator("mapping")
    @classmethod
    def _keys_not_empty(cls, mapping: dict[str, Any] | None) -> dict[str, Any] | None:
        if mapping is not None and any(not key for key in mapping):
            raise config_error("empty_key")
        return mapping


class LoopData(NodeData):
    timeout: float = Field(default=3600, gt=0, le=86400, description="For the whole loop.")
    items_path: str = Field(
        min_length=1,
        max_length=1000,
        description="One reference to a list: `items`, `input.items` or `{input.items}`.",
    )
    item_variable: str = Field(
        default="item",
        description="Not input, value or index.",
        json_schema_extra={
            **IDENTIFIER_SCHEMA,
            "not": {"enum": _RESERVED_LIST},
        },
    )
    error_handling: Literal["stop", "continue", "collect"] = "stop"
    parallelism: int = Field(default=1, ge=1, le=32)
    max_iterations: int = Field(default=1000, ge=1, le=10_000)
    output: Any = Field(default=None, description="Per-iteration result template.")

    @field_validator("items_path")
    @classmethod
    def _one_reference(cls, items_path: str) -> str:
        if single_reference(items_path) is None and single_reference(f"{{{items_path}}}") is None:
            raise config_error("invalid_items_path")
        return items_path

    @field_validator("item_variable")
    @classmethod
    def _usable_name(cls, name: str) -> str:
        check_identifier(name)
        if name in RESERVED_NAMES:
            raise config_error(
                "reserved_name", value=name, reserved=", ".join(sorted(RESERVED_NAMES))
            )
        return name

    @property
    def items_template(self) -> str:
        """items_path as a template: a bare path `items` is the reference `{items}`."""
        return self.items_path if "{" in self.items_path else f"{{{self.items_path}}}"


class OutputData(NodeData):
    model_config = ConfigDict(
        json_schema_extra={
            **UI_KEYS_SCHEMA,
            "anyOf": [  # not both
                {"properties": {"mapping": {"type": "null"}}},
                {"properties": {"value": {"type": "null"}}},
            ],
        }
    )

    timeout: float = Field(default=10, gt=0, le=86400)
    mapping: dict[str, Any] | None = None
    value: Any = Field(default=None, validate_default=True)

    @field_validator("mapping")
    @classmethod
    def _keys_not_empty(cls, mapping: dict[str, Any] | None) -> dict[str, Any] | None:
        if mapping is not None and any(not key for key in mapping):
            raise config_error("empty_key")
        return mapping

    @field_validator("value")
    @classmethod
    def _not_both(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None and info.data.get("mapping") is not None:
            raise config_error("output_ambiguous")
        return value


NODE_DATA_MODELS: dict[str, type[BaseModel]] = {
    "start": StartData,
    "input": InputData,
    "llm": LLMData,
    "condition": ConditionData,
    "transform": TransformData,
    "loop": LoopData,
    "agent": AgentData,
    "output": OutputData,
    "end": EndData,
}


class UnknownNodeType(ValueError):
    def __init__(self, node_type: str) -> None:
        self.node_type = node_type
        super().__init__(f"unknown node type {node_type!r}")


def parse_node_data(node_type: str, data: dict[str, Any]) -> BaseModel:
    """The typed config of a node; pydantic.ValidationError if invalid, UnknownNodeType if
    `node_type` is none of NODE_TYPES."""
    model = NODE_DATA_MODELS.get(node_type)
    if model is None:
        raise UnknownNodeType(node_type)
    return model.model_validate(data)
