"""What a node's output looks like to the nodes after it.

Every node that ran has an output *record*. For most types the record is the value itself;
llm, agent, loop and condition nodes produce an object whose *primary* field is what `{node}`
and `{value}` mean, while `{node.field}` reads any field of the record.
"""

from __future__ import annotations

from typing import Any, Final

# Node type -> the record field that is its primary output (absent: the record itself).
PRIMARY_FIELDS: Final[dict[str, str]] = {
    "llm": "text",  # record: text, json (response_format "json"), model, usage, finish_reason
    "agent": "text",  # record: text, tool_calls, iterations, usage
    "loop": "results",  # record: results, errors, count
    "condition": "value",  # record: result, branch, value (the input, passed through)
}


def primary_output(node_type: str, record: Any) -> Any:
    key = PRIMARY_FIELDS.get(node_type)
    if key is not None and isinstance(record, dict) and key in record:
        return record[key]
    return record


def as_output_data(value: Any) -> dict[str, Any]:
    """An execution's output_data is always an object: other values become {"result": v}."""
    return value if isinstance(value, dict) else {"result": value}
