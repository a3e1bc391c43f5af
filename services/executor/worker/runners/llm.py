"""The llm node: one chat completion through an OpenAI-compatible provider.

Text chunks go to the execution's viewers as they arrive (when `stream` is on); the record
keeps the whole text, the model's token usage and why it stopped. Rate limits and server errors
are retried inside the call, then reported as retryable so the node's retry policy applies.
"""

from __future__ import annotations

import json
import time
from typing import Any, TypeVar

from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from services.executor.metrics import LLM_CALLS, LLM_SECONDS, LLM_TOKENS, bounded
from services.executor.node_run import NodeResult, NodeRunError
from services.executor.worker.llm.client import ChatResponse, LLMError
from services.executor.worker.llm.providers import ProviderEndpoint, resolve_endpoint
from services.executor.worker.runners.context import ChunkSink, NodeAttempt, NodeServices
from shared.i18n import Message
from shared.net.outbound import OutboundRefused, check_url
from shared.tracing import tracer
from shared.workflow.nodes import LLMData, ModelNodeData
from shared.workflow.references import RuntimeContext
from shared.workflow.templates import render
from shared.workflow.value_words import KIND_WORDS, filled, kind_of

M = TypeVar("M", bound=ModelNodeData)

_tracer = tracer("agentflow.llm")
_NOT_JSON = Message(
    "模型的回答不是 JSON 对象:{detail}", "the model's answer is not a JSON object: {detail}"
)
_TOO_DEEP = Message("嵌套过深", "it is nested too deeply")
_NOT_AN_OBJECT = Message(
    "模型的回答是 JSON {kind},不是 JSON 对象", "the model's answer is a JSON {kind}, not an object"
)


def as_node_error(exc: LLMError | OutboundRefused) -> NodeRunError:
    retryable = isinstance(exc, LLMError) and exc.retryable
    return NodeRunError(Message(exc.render("zh"), exc.render("en")), retryable=retryable)


async def endpoint_for(config: ModelNodeData, services: NodeServices) -> ProviderEndpoint:
    """The provider's endpoint; a node's own base_url must pass the outbound guard."""
    try:
        if config.base_url is not None:
            await check_url(config.base_url, services.outbound)
        return resolve_endpoint(
            config.provider, config.base_url, services.environ, outbound=services.outbound
        )
    except (LLMError, OutboundRefused) as exc:
        raise as_node_error(exc) from exc


def first_messages(config: ModelNodeData, context: RuntimeContext) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if config.system_prompt:
        messages.append(
            {"role": "system", "content": render(config.system_prompt, context.resolve)}
        )
    messages.append({"role": "user", "content": render(config.prompt, context.resolve)})
    return messages


async def call_model(
    services: NodeServices, endpoint: ProviderEndpoint, model: str, **options: Any
) -> ChatResponse:
    """One model call, counted and timed by provider and model."""
    started = time.perf_counter()
    labels = (endpoint.provider, bounded(model))
    attributes = {"gen_ai.system": endpoint.provider, "gen_ai.request.model": model}
    with _tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT,
                                       attributes=attributes) as span:  # fmt: skip
        try:
            response = await services.chat.chat(endpoint, model=model, **options)
        except LLMError as exc:
            LLM_CALLS.labels(*labels, "error").inc()
            span.set_status(StatusCode.ERROR, exc.render("en"))
            raise
        finally:
            LLM_SECONDS.labels(endpoint.provider).observe(time.perf_counter() - started)
        span.set_attribute("gen_ai.usage.input_tokens", response.usage.get("prompt_tokens", 0))
        span.set_attribute("gen_ai.usage.output_tokens", response.usage.get("completion_tokens", 0))
    LLM_CALLS.labels(*labels, "ok").inc()
    for kind in ("prompt", "completion"):
        LLM_TOKENS.labels(*labels, kind).inc(response.usage.get(f"{kind}_tokens", 0))
    return response


def within_budget(config: M, token_budget: int | None) -> M:
    """The node's config with answers that cannot outgrow what is left of the run's token
    budget: `max_tokens` lowered to it. The prompt's tokens count too, so a call can still go
    over by its prompt; the next call is then refused."""
    if token_budget is None or (config.max_tokens or token_budget + 1) <= token_budget:
        return config
    return config.model_copy(update={"max_tokens": token_budget})


def usage_log(config: ModelNodeData, response: ChatResponse) -> tuple[str, str]:
    tokens = response.usage.get("total_tokens", 0)
    return ("info", f"LLM {config.provider}/{response.model}: {tokens} tokens")


async def llm_node(config: BaseModel, attempt: NodeAttempt) -> NodeResult:
    """The llm node as services/executor/node_kinds.py runs it: within the run's token budget."""
    assert isinstance(config, LLMData)
    config = within_budget(config, attempt.token_budget)
    return await run_llm(config, attempt.context, attempt.services, attempt.emit)


async def run_llm(
    config: LLMData, context: RuntimeContext, services: NodeServices, emit: ChunkSink | None
) -> NodeResult:
    endpoint = await endpoint_for(config, services)
    try:
        response = await call_model(
            services,
            endpoint,
            config.effective_model,
            messages=first_messages(config, context),
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            top_p=config.top_p,
            json_mode=config.response_format == "json",
            on_chunk=emit if config.stream else None,
            timeout=config.timeout,
        )
    except LLMError as exc:
        raise as_node_error(exc) from exc
    record: dict[str, Any] = {
        "text": response.text,
        "model": response.model,
        "usage": response.usage,
        "finish_reason": response.finish_reason,
    }
    if config.response_format == "json":
        record["json"] = json_answer(response.text)
    return NodeResult(record, logs=(usage_log(config, response),))


def json_answer(text: str) -> dict[str, Any]:
    """The model's answer as the JSON object `response_format: "json"` asks for; a
    NodeRunError saying what it is instead (in words: a list, a text; not Python's names)."""
    try:
        parsed = json.loads(text)
    except ValueError as exc:  # the parser's own words: where the JSON goes wrong
        raise NodeRunError(_NOT_JSON, detail=str(exc)) from exc
    except RecursionError as exc:
        raise NodeRunError(filled(_NOT_JSON, detail=_TOO_DEEP)) from exc
    if not isinstance(parsed, dict):
        raise NodeRunError(filled(_NOT_AN_OBJECT, kind=KIND_WORDS[kind_of(parsed)]))
    return parsed
