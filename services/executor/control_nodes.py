"""Runners of the control nodes, the ones that need no outside world: start, input, condition,
transform (but its `data_source` mode), output and end. Pure functions of a node's config and
its runtime context that take microseconds, so the orchestrator runs them in its decision pass
(services/executor/inline.py; a worker when `inline_control_nodes` is off), and a redelivered
command computes the same result again (docs/workflow-model.md describes each output).
services/executor/node_kinds.py says which runner serves which node type."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel

from services.executor.node_run import NodeResult, NodeRunError
from shared.i18n import Message
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
)
from shared.workflow.outputs import as_output_data
from shared.workflow.references import RuntimeContext
from shared.workflow.templates import render_value
from shared.workflow.value_words import filled

_JMESPATH = Message("JMESPath 求值失败:{detail}", "JMESPath evaluation failed: {detail}")
_CONDITION = Message(
    "条件 {expression} 求值失败:{detail}", "the condition {expression} failed: {detail}"
)
_SHOWN_EXPRESSION_CHARS = 200


def start(_: BaseModel, context: RuntimeContext) -> NodeResult:
    return NodeResult(dict(context.input_data))


def input_node(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, InputData)
    try:
        return NodeResult(apply_input_fields(config.fields, context.input_data))
    except InputDataError as exc:
        raise NodeRunError(Message(exc.render("zh"), exc.render("en"))) from exc


def condition(config: BaseModel, context: RuntimeContext) -> NodeResult:
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


def transform(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, TransformData)
    if config.mode == "template":
        return NodeResult(render_value(config.template, context.resolve))
    if config.mode == "mapping":
        return NodeResult(render_value(config.mapping or {}, context.resolve))
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


def output(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, OutputData)
    if config.mapping is not None:
        return NodeResult(render_value(config.mapping, context.resolve))
    if config.value is not None:
        return NodeResult(render_value(config.value, context.resolve))
    return NodeResult(context.value())


def end(config: BaseModel, context: RuntimeContext) -> NodeResult:
    assert isinstance(config, EndData)
    if config.output is not None:
        return NodeResult({"output": render_value(config.output, context.resolve)})
    return NodeResult({"output": None})


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
