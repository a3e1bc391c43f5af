"""The http_request tool: one HTTP request through the outbound guard.

The tool's config limits it (methods, allowed hosts, timeout, response size); the guard refuses
private addresses on every hop. The model gets the status, the content type and the body text
(JSON bodies stay text), so a 404 is an answer it can read, not a failure.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from shared.i18n import Message
from shared.net.outbound import OutboundRefused, guarded_request
from shared.workflow.tools import HttpRequestTool

if TYPE_CHECKING:
    from services.executor.worker.tools.registry import ToolContext


class HttpRequestArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    method: str | None = None
    headers: dict[str, str] | None = None
    body: str | None = None


_METHOD_NOT_ALLOWED = Message(
    "此工具不允许 {method} 请求(允许:{allowed})",
    "the method {method} is not allowed for this tool (allowed: {allowed})",
)


def describe(tool: HttpRequestTool) -> str:
    hosts = ", ".join(tool.allowed_hosts) if tool.allowed_hosts else "any public host"
    return (
        "Send an HTTP request and get back JSON with the response's status, content_type, "
        f"body (text, at most {tool.max_response_chars} characters) and truncated. "
        f"Methods: {', '.join(tool.methods)}. Hosts: {hosts}."
    )


def parameters(tool: HttpRequestTool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "Absolute http or https URL"},
            "method": {
                "type": "string",
                "enum": list(tool.methods),
                "description": f"Default {_default_method(tool)}",
            },
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "Request headers",
            },
            "body": {"type": "string", "description": "Request body (e.g. JSON text)"},
        },
        "required": ["url"],
        "additionalProperties": False,
    }


def _default_method(tool: HttpRequestTool) -> str:
    return "GET" if "GET" in tool.methods else tool.methods[0]


async def run_http_request(
    tool: HttpRequestTool, arguments: HttpRequestArguments, ctx: ToolContext
) -> str:
    """The response as JSON text; OutboundRefused/OutboundFailed when there is none."""
    method = (arguments.method or _default_method(tool)).strip().upper()
    if method not in tool.methods:
        raise OutboundRefused(
            _METHOD_NOT_ALLOWED, method=method[:20], allowed=", ".join(tool.methods)
        )
    response = await guarded_request(
        ctx.http,
        method,
        arguments.url,
        policy=ctx.outbound,
        headers=arguments.headers,
        content=arguments.body,
        timeout=tool.timeout,
        max_chars=tool.max_response_chars,
        allowed_hosts=tool.allowed_hosts,
    )
    return json.dumps(
        {
            "status": response.status_code,
            "content_type": response.headers.get("content-type"),
            "body": response.text,
            "truncated": response.truncated,
        },
        ensure_ascii=False,
    )
