"""What a node's output looks like to the nodes after it.

Every node that ran has an output *record*. For most types the record is the value itself;
llm, agent, loop and condition nodes produce an object whose *primary* field is what `{node}`
and `{value}` mean, while `{node.field}` reads any field of the record.

What a node *hands on* (`handed_on`) is what the next node's bare names (`{text}`, `{value}`)
read fields of: the record, except that a condition hands on what it received, so a branch
reads the same fields as the condition did (n8n's IF node passes its items through too).
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


# Node types that route what they receive instead of producing something new.
PASS_THROUGH_TYPES: Final = frozenset({"condition"})


def handed_on(node_type: str, record: Any) -> Any:
    """What the node after this one reads fields of: the record, or for a condition the value
    it passed through. A failed condition's `{"error": ...}` record has no `value` and is
    handed on as it is."""
    if node_type in PASS_THROUGH_TYPES:
        return primary_output(node_type, record)
    return record


def as_output_data(value: Any) -> dict[str, Any]:
    """An execution's output_data is always an object: other values become {"result": v}."""
    return value if isinstance(value, dict) else {"result": value}
