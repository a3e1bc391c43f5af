"""What a worker's runners are given: the worker's services (HTTP, the chat client, the
outbound guard, the provider environment, the data sources client) and, per node attempt,
what its templates read, a way to push text chunks to the execution's viewers, and what the
command says about the run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx
from pydantic import BaseModel

from services.executor.node_run import NodeResult
from services.executor.worker.datasources_client import DataSourcesClient
from services.executor.worker.llm.client import ChatClient
from shared.i18n import Language
from shared.net.outbound import OutboundPolicy
from shared.workflow.references import RuntimeContext

ChunkSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class NodeServices:
    http: httpx.AsyncClient
    chat: ChatClient
    outbound: OutboundPolicy
    environ: Mapping[str, str]
    data_sources: DataSourcesClient | None = None


@dataclass(frozen=True)
class NodeAttempt:
    """One node attempt as a worker runs it."""

    context: RuntimeContext  # what the node's templates read
    services: NodeServices
    emit: ChunkSink | None = None
    language: Language = "zh"
    owner_id: str = ""  # whose data sources the node may query
    token_budget: int | None = None  # model tokens the run may still spend
    max_agent_iterations: int | None = None  # the platform's cap on an agent's model turns


# How services/executor/node_kinds.py holds a worker's runner: the node's parsed config (its
# node type's model) and the attempt.
WorkerRunner = Callable[[BaseModel, NodeAttempt], Awaitable[NodeResult]]
