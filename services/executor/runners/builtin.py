"""Runners of the nodes that need no outside world: start, input, condition, transform,
output and end. Pure functions of a node's config and its runtime context, so a redelivered
command computes the same result again (docs/workflow-model.md describes each output)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from shared.i18n import LocalizedError, Message
from shared.text import shortened
from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.inputs import InputDataError, apply_input_fields
from shared.workflow.model import HANDLE_FALSE, HANDLE_TRUE
from shared.workflow.nodes import (
    ConditionData,
    EndData,
    InputData,
    OutputData,
    TransformData,
    parse_node_data,
)
from shared.workflow.outputs import as_output_data
from shared.workflow.references import RuntimeContext
from shared.workflow.templates import render_value
from shared.workflow.value_words import filled

BAD_CONFIG = Message("节点配置无效:{detail}", "invalid node configuration: {detail}")
_JMESPATH = Message("JMESPath 求值失败:{detail}", "JMESPath evaluation failed: {detail}")
_CONDITION = Message(
    "条件 {expression} 求值失败:{detail}", "the condition {expression} failed: {detail}"
)
_SHOWN_EXPRESSION_CHARS = 200
_NOT_BUILTIN = Message("节点类型 {type} 不由内置执行器运行", "node type {type} is not built in")


class NodeRunError(LocalizedError):
    """A node failed. `retryable` failures (timeouts, 429/5xx) are worth another attempt;
    the ones here are deterministic, so a retry would fail the same way."""

    def __init__(
        self,
        message: Message,
        *,
        retryable: bool = False,
        logs: Sequence[tuple[str, str]] = (),
        **params: Any,
    ) -> None:
        super().__init__(message, **params)
        self.retryable = retryable
        self.logs = logs  # what the node did before it failed (an agent's tool calls)


@dataclass(frozen=True)
class NodeResult:
    output: Any
    branch: str | None = None  # the edges a condition takes
    logs: Sequence[tuple[str, str]] = field(default_factory=tuple)  # (level, message)


def _start(_: BaseModel, context: RuntimeContext) -> NodeResult:
    return NodeResult(dict(context.input_data))


def _input(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, InputData)
    try:
        return NodeResult(apply_input_fields(config.fields, context.input_data))
    except InputDataError as exc:
        raise NodeRunError(Message(exc.render("zh"), exc.render("en"))) from exc


def _condition(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, ConditionData)
    try:
        result = compile_condition(config.expression).evaluate(context.resolve)
    except ExpressionError as exc:
        expression = shortened(config.expression, _SHOWN_EXPRESSION_CHARS)
        detail = Message(exc.render("zh"), exc.render("en"))
        raise NodeRunError(filled(_CONDITION, expression=expression, detail=detail)) from exc
    branch = HANDLE_TRUE if result else HANDLE_FALSE
    record = {"result": result, "branch": branch, "value": context.value()}
    return NodeResult(record, branch=branch, logs=(("info", f"condition → {branch}"),))


def _transform(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, TransformData)
    if config.mode == "template":
        return NodeResult(render_value(config.template, context.resolve))
    if config.mode == "mapping":
        return NodeResult(render_value(config.mapping or {}, context.resolve))
    if config.mode == "data_source":  # needs the data sources service: the worker runs it
        raise NodeRunError(_NOT_BUILTIN, type="transform/data_source")
    # Without a `source` the expression reads the whole upstream output (what `{value}`
    # meant before bare names read fields), not a field that happens to be called "value".
    if "source" in config.model_fields_set:
        source = render_value(config.source, context.resolve)
    else:
        source = context.value()
    try:
        return NodeResult(jmespath.search(config.expression or "", source))
    except JMESPathError as exc:
        raise NodeRunError(_JMESPATH, detail=str(exc)) from exc


def _output(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, OutputData)
    if config.mapping is not None:
        return NodeResult(render_value(config.mapping, context.resolve))
    if config.value is not None:
        return NodeResult(render_value(config.value, context.resolve))
    return NodeResult(context.value())


def _end(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, EndData)
    if config.output is not None:
        return NodeResult({"output": render_value(config.output, context.resolve)})
    return NodeResult({"output": None})


BUILTIN_RUNNERS: dict[str, Callable[[BaseModel, RuntimeContext], NodeResult]] = {
    "start": _start,
    "input": _input,
    "condition": _condition,
    "transform": _transform,
    "output": _output,
    "end": _end,
}


def run_builtin(node_type: str, data: dict[str, Any], context: RuntimeContext) -> NodeResult:
    runner = BUILTIN_RUNNERS.get(node_type)
    if runner is None:
        raise NodeRunError(_NOT_BUILTIN, type=node_type)
    try:
        config = parse_node_data(node_type, data)
    except PydanticValidationError as exc:
        raise NodeRunError(BAD_CONFIG, detail=str(exc.errors()[0]["msg"])) from exc
    return runner(config, context)


def final_output_data(
    end_record: Any, output_records: Sequence[Any], record_before_end: Any
) -> dict[str, Any]:
    """An execution's output_data, by the documented preference: the end node's `output`;
    else the outputs of the output nodes that ran (objects merged in the order they
    finished); else the record of the node before the end node."""
    if isinstance(end_record, dict) and end_record.get("output") is not None:
        return as_output_data(end_record["output"])
    if output_records:
        if all(isinstance(record, dict) for record in output_records):
            merged: dict[str, Any] = {}
            for record in output_records:
                merged.update(record)
            return merged
        return as_output_data(output_records[-1])
    return as_output_data(record_before_end)
