"""What the model-calling runners need from the worker: HTTP, the chat client, the outbound
guard, the provider environment, and a way to push text chunks to the execution's viewers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import httpx

from services.executor.datasources_client import DataSourcesClient
from services.executor.llm.client import ChatClient
from shared.net.outbound import OutboundPolicy

ChunkSink = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class NodeServices:
    http: httpx.AsyncClient
    chat: ChatClient
    outbound: OutboundPolicy
    environ: Mapping[str, str]
    data_sources: DataSourcesClient | None = None
