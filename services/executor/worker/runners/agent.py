"""The agent node: a model that calls tools (function calling) until it answers.

Each model call may ask for tools; their results go back as `tool` messages and the model is
asked again, at most `max_iterations` times. The trace of calls is the record's `tool_calls`
and one log line each. Tool failures are answers to the model (it may correct itself), not
node failures; only the model call itself failing, or no answer in time, fails the node.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from services.executor.messages import AGENT_OVER_BUDGET
from services.executor.node_run import NodeResult, NodeRunError
from services.executor.worker.llm.client import LLMError
from services.executor.worker.runners.context import ChunkSink, NodeAttempt, NodeServices
from services.executor.worker.runners.llm import (
    as_node_error,
    call_model,
    endpoint_for,
    first_messages,
    usage_log,
    within_budget,
)
from services.executor.worker.tools import ToolContext, ToolOutcome, call_tool, tool_schema
from shared.i18n import Language, Message
from shared.text import shortened
from shared.workflow.nodes import AgentData
from shared.workflow.references import RuntimeContext
from shared.workflow.templates import render
from shared.workflow.tools import DataSourceQueryTool, Tool

_NO_ANSWER = Message(
    "智能体在 {n} 次模型调用内没有给出答案", "the agent gave no answer within {n} model calls"
)
_UNKNOWN_TOOL = Message("没有名为 {name} 的工具", "there is no tool named {name}")
_LOGGED_CHARS = 500


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _rendered(tool: Tool, context: RuntimeContext) -> Tool:
    """A data source tool's `data_source_id` is a template: fill it in for this run."""
    if isinstance(tool, DataSourceQueryTool) and tool.data_source_id is not None:
        return tool.model_copy(
            update={"data_source_id": render(tool.data_source_id, context.resolve)}
        )
    return tool


def _clip(text: str) -> str:
    return shortened(text, _LOGGED_CHARS)


def capped(config: AgentData, max_iterations: int | None) -> AgentData:
    """The agent's config within the platform's cap on model turns."""
    if max_iterations is None or config.max_iterations <= max_iterations:
        return config
    return config.model_copy(update={"max_iterations": max_iterations})


async def agent_node(config: BaseModel, attempt: NodeAttempt) -> NodeResult:
    """The agent node as services/executor/node_kinds.py runs it: within the platform's cap
    on model turns and the run's token budget."""
    assert isinstance(config, AgentData)
    config = within_budget(capped(config, attempt.max_agent_iterations), attempt.token_budget)
    return await run_agent(
        config,
        attempt.context,
        attempt.services,
        attempt.emit,
        attempt.language,
        attempt.owner_id,
        token_budget=attempt.token_budget,
    )


async def run_agent(
    config: AgentData,
    context: RuntimeContext,
    services: NodeServices,
    emit: ChunkSink | None,
    language: Language = "zh",
    owner_id: str = "",
    token_budget: int | None = None,
) -> NodeResult:
    endpoint = await endpoint_for(config, services)
    configured = [_rendered(tool, context) for tool in config.tools]
    tools = {tool.tool_name: tool for tool in configured}
    schemas = [tool_schema(tool) for tool in configured] or None
    tool_context = ToolContext(
        http=services.http,
        outbound=services.outbound,
        language=language,
        data_sources=services.data_sources,
        owner_id=owner_id,
    )
    messages = first_messages(config, context)
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    trace: list[dict[str, Any]] = []
    logs: list[tuple[str, str]] = []
    for iteration in range(1, config.max_iterations + 1):
        try:
            response = await call_model(
                services,
                endpoint,
                config.effective_model,
                messages=messages,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                tools=schemas,
                on_chunk=emit,
                timeout=config.timeout,
            )
        except LLMError as exc:
            raise as_node_error(exc) from exc
        for key in usage:
            usage[key] += response.usage.get(key, 0)
        logs.append(usage_log(config, response))
        if response.tool_calls and token_budget is not None:
            if usage["total_tokens"] >= token_budget:  # another turn would overspend the run
                raise NodeRunError(AGENT_OVER_BUDGET, logs=tuple(logs), budget=token_budget)
            config = within_budget(config, token_budget - usage["total_tokens"])
        if not response.tool_calls:
            record = {
                "text": response.text,
                "tool_calls": trace,
                "iterations": iteration,
                "usage": usage,
                "model": response.model,
            }
            return NodeResult(record, logs=tuple(logs))
        messages.append(
            {
                "role": "assistant",
                "content": response.text or None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in response.tool_calls
                ],
            }
        )
        for call in response.tool_calls:
            tool = tools.get(call.name)
            if tool is None:
                outcome = ToolOutcome(False, _UNKNOWN_TOOL.render(language, name=call.name))
            else:
                outcome = await call_tool(tool, call.arguments, tool_context)
            trace.append(
                {
                    "tool": call.name,
                    "arguments": _arguments(call.arguments),
                    "result": outcome.result,
                    "ok": outcome.ok,
                }
            )
            logs.append(
                (
                    "info" if outcome.ok else "warn",
                    f"tool {call.name}({_clip(call.arguments)}) → {_clip(outcome.result)}",
                )
            )
            messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome.result})
    raise NodeRunError(_NO_ANSWER, logs=logs, n=config.max_iterations)
