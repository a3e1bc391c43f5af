"""Node data models: the seed's nodes fit, defaults are sensible, typos are reported."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.workflow.model import NODE_TYPES, Node, WorkflowGraph
from shared.workflow.nodes import (
    NODE_DATA_MODELS,
    AgentData,
    ConditionData,
    InputData,
    LLMData,
    LoopData,
    OutputData,
    TransformData,
    UnknownNodeType,
    parse_node_data,
)
from shared.workflow.policy import RetryPolicy


def error_types(node_type: str, data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        parse_node_data(node_type, data)
    return {".".join(map(str, e["loc"])): e["type"] for e in caught.value.errors()}


def test_every_node_type_has_a_model() -> None:
    assert set(NODE_DATA_MODELS) == set(NODE_TYPES)


def test_seed_llm_node_from_the_api_document() -> None:
    data = {
        "provider": "deepseek",
        "model": "deepseek-chat",
        "prompt": "请回答:{input}",
        "temperature": 0.7,
        "max_tokens": 1000,
    }
    config = parse_node_data("llm", data)
    assert isinstance(config, LLMData)
    assert config.max_tokens == 1000
    assert config.stream is True
    assert config.response_format == "text"
    assert config.timeout == 120


def test_seed_condition_and_loop_nodes() -> None:
    assert isinstance(parse_node_data("condition", {"expression": "{value} > 10"}), ConditionData)
    loop = parse_node_data(
        "loop", {"items_path": "items", "item_variable": "item", "error_handling": "continue"}
    )
    assert isinstance(loop, LoopData)
    assert loop.items_template == "{items}"
    assert (loop.parallelism, loop.max_iterations) == (1, 1000)


def test_llm_defaults_to_deepseek_and_its_default_model() -> None:
    config = parse_node_data("llm", {"prompt": "hi"})
    assert isinstance(config, LLMData)
    assert (config.provider, config.effective_model, config.temperature) == (
        "deepseek",
        "deepseek-chat",
        0.7,
    )


def test_providers_without_a_default_model_require_one() -> None:
    assert error_types("llm", {"provider": "ollama", "prompt": "hi"}) == {"model": "model_required"}
    config = parse_node_data("llm", {"provider": "ollama", "model": "qwen2", "prompt": "hi"})
    assert isinstance(config, LLMData)


@pytest.mark.parametrize(
    ("data", "where", "kind"),
    [
        ({"prompt": "hi", "temprature": 1}, "temprature", "extra_forbidden"),
        ({"prompt": "hi", "temperature": 2.5}, "temperature", "less_than_equal"),
        ({"prompt": ""}, "prompt", "string_too_short"),
        ({}, "prompt", "missing"),
        ({"prompt": "hi", "provider": "anthropic"}, "provider", "literal_error"),
        ({"prompt": "hi", "base_url": "ftp://x"}, "base_url", "string_pattern_mismatch"),
        (
            {"prompt": "hi", "retry": {"max_attempts": 0}},
            "retry.max_attempts",
            "greater_than_equal",
        ),
        ({"prompt": "hi", "retry": {"tries": 3}}, "retry.tries", "extra_forbidden"),
        ({"prompt": "hi", "on_error": "ignore"}, "on_error", "literal_error"),
        ({"prompt": "hi", "timeout": 0}, "timeout", "greater_than"),
    ],
)
def test_llm_config_errors_name_the_field(data: dict[str, Any], where: str, kind: str) -> None:
    assert error_types("llm", data) == {where: kind}


def test_label_description_ui_and_underscore_keys_are_allowed() -> None:
    data = {"label": "x", "description": "y", "uiCollapsed": True, "_width": 3, "prompt": "hi"}
    config = parse_node_data("llm", data)
    assert isinstance(config, LLMData)
    assert config.label == "x"
    assert "uiCollapsed" not in config.model_dump()


def test_ui_keys_round_trip_in_the_stored_node() -> None:
    stored = {"id": "n", "type": "llm", "data": {"prompt": "hi", "uiColor": "red"}, "width": 5}
    node = Node.model_validate(stored)
    assert node.data["uiColor"] == "red"
    assert node.model_dump()["width"] == 5
    assert WorkflowGraph(nodes=[node]).model_dump()["nodes"][0]["data"] == stored["data"]


def test_unknown_node_type_is_its_own_error() -> None:
    with pytest.raises(UnknownNodeType):
        parse_node_data("webhook", {})


def test_input_fields() -> None:
    config = parse_node_data(
        "input",
        {"fields": [{"name": "text", "required": True}, {"name": "n", "type": "integer"}]},
    )
    assert isinstance(config, InputData)
    assert [f.type for f in config.fields] == ["string", "integer"]
    assert error_types("input", {"fields": [{"name": "a b"}]}) == {
        "fields.0.name": "invalid_identifier"
    }
    assert error_types("input", {"fields": [{"name": "a"}, {"name": "a"}]}) == {
        "fields": "duplicate_name"
    }
    assert error_types("input", {"fields": [{"name": "n", "type": "integer", "default": 1.5}]}) == {
        "fields.0": "default_type_mismatch"
    }
    assert error_types("input", {"fields": [{"name": "b", "type": "bool"}]}) == {
        "fields.0.type": "literal_error"
    }


def test_condition_expression_must_compile() -> None:
    assert error_types("condition", {"expression": "{value} >"}) == {
        "expression": "invalid_expression"
    }


def test_transform_modes_require_their_field_and_validate_jmespath() -> None:
    assert isinstance(parse_node_data("transform", {"template": "{value}"}), TransformData)
    assert error_types("transform", {"mode": "mapping"}) == {"mapping": "required_for_mode"}
    assert error_types("transform", {"mode": "jmespath"}) == {"expression": "required_for_mode"}
    assert error_types("transform", {"mode": "jmespath", "expression": "items[?"}) == {
        "expression": "invalid_expression"
    }
    config = parse_node_data(
        "transform", {"mode": "jmespath", "expression": "items[?p > `1`].n", "template": "x"}
    )
    assert isinstance(config, TransformData)
    assert config.source == "{value}"
    assert error_types("transform", {"mode": "code", "template": "x"}) == {"mode": "literal_error"}


def test_loop_limits_and_names() -> None:
    assert error_types("loop", {"items_path": "{input.items} and more"}) == {
        "items_path": "invalid_items_path"
    }
    assert error_types("loop", {"items_path": "items", "item_variable": "index"}) == {
        "item_variable": "reserved_name"
    }
    assert error_types("loop", {"items_path": "items", "item_variable": "my-item"}) == {
        "item_variable": "invalid_identifier"
    }
    assert error_types("loop", {"items_path": "items", "parallelism": 33}) == {
        "parallelism": "less_than_equal"
    }
    assert error_types("loop", {"items_path": "items", "max_iterations": 10001}) == {
        "max_iterations": "less_than_equal"
    }
    assert error_types("loop", {"items_path": "items", "error_handling": "skip"}) == {
        "error_handling": "literal_error"
    }
    loop = parse_node_data("loop", {"items_path": "{input.items}", "error_handling": "collect"})
    assert isinstance(loop, LoopData)
    assert (loop.items_template, loop.error_handling, loop.item_variable) == (
        "{input.items}",
        "collect",
        "item",
    )


def test_agent_tools() -> None:
    config = parse_node_data(
        "agent",
        {
            "prompt": "{input.question}",
            "tools": [
                {"type": "calculator"},
                {"type": "http_request", "allowed_hosts": ["api.example.com"]},
                {"type": "data_source_query", "name": "db", "data_source_id": "{input.ds}"},
            ],
        },
    )
    assert isinstance(config, AgentData)
    assert [tool.tool_name for tool in config.tools] == ["calculator", "http_request", "db"]
    assert config.max_iterations == 5
    assert error_types("agent", {"prompt": "x", "tools": [{"type": "shell"}]}) == {
        "tools.0": "union_tag_invalid"
    }
    assert error_types("agent", {"prompt": "x", "tools": [{"type": "calculator"}] * 2}) == {
        "tools": "duplicate_name"
    }
    assert error_types("agent", {"prompt": "x", "max_iterations": 21}) == {
        "max_iterations": "less_than_equal"
    }
    assert error_types("agent", {"prompt": "x", "tools": [{"type": "calculator", "x": 1}]}) == {
        "tools.0.calculator.x": "extra_forbidden"
    }


def test_output_takes_mapping_or_value_not_both() -> None:
    assert isinstance(parse_node_data("output", {"mapping": {"a": "{value}"}}), OutputData)
    assert isinstance(parse_node_data("output", {"value": "{value}"}), OutputData)
    assert error_types("output", {"mapping": {"a": "x"}, "value": "y"}) == {
        "value": "output_ambiguous"
    }


def test_retry_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(
        max_attempts=5, backoff_seconds=1, backoff_multiplier=3, max_backoff_seconds=5
    )
    assert [policy.delay_before(n) for n in (1, 2, 3, 4)] == [0.0, 1.0, 3.0, 5.0]
