"""Transform nodes in `data_source` mode: one read-only query on a data source of the
workflow's owner. The query text is fixed in the node; values from the run go in as bound
parameters (rendered templates), so nothing a user types can change the statement."""

from __future__ import annotations

from pydantic import BaseModel

from services.executor.node_run import NodeResult, NodeRunError
from services.executor.worker.datasources_client import DataSourceQueryError
from services.executor.worker.runners.context import NodeAttempt, NodeServices
from shared.i18n import Message
from shared.workflow.nodes import TransformData
from shared.workflow.references import RuntimeContext
from shared.workflow.templates import render, render_value

_NO_SERVICE = Message(
    "执行器没有配置数据源服务(AGENTFLOW_DATASOURCES_URL)",
    "the executor has no data sources service configured (AGENTFLOW_DATASOURCES_URL)",
)


async def data_source_node(config: BaseModel, attempt: NodeAttempt) -> NodeResult:
    """A transform node in `data_source` mode, as services/executor/node_kinds.py runs it."""
    assert isinstance(config, TransformData)
    return await run_data_source_query(config, attempt.context, attempt.services, attempt.owner_id)


async def run_data_source_query(
    config: TransformData, context: RuntimeContext, services: NodeServices, owner_id: str
) -> NodeResult:
    if services.data_sources is None:
        raise NodeRunError(_NO_SERVICE)
    source_id = render(config.data_source_id or "", context.resolve)
    parameters = render_value(config.parameters, context.resolve)
    try:
        result = await services.data_sources.query(
            owner_id, source_id, config.query, parameters, config.max_rows, config.timeout
        )
    except DataSourceQueryError as exc:
        raise NodeRunError(
            Message(exc.render("zh"), exc.render("en")), retryable=exc.retryable
        ) from exc
    line = f"data source {source_id}: {result.get('count', 0)} rows"
    if result.get("truncated"):
        line += " (truncated)"
    return NodeResult(result, logs=(("info", line),))
