"""The tools an agent node can call: calculator, http_request (through the outbound guard) and
data_source_query. `tool_schema` turns one into an OpenAI function definition; `call_tool` runs
the model's call and always answers with a `ToolOutcome` the model can read."""

from services.executor.worker.tools.registry import ToolContext, ToolOutcome, call_tool, tool_schema

__all__ = ["ToolContext", "ToolOutcome", "call_tool", "tool_schema"]
