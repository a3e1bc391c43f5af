"""The workflow graph model that the workflows service and the executor share.

- `model`: nodes and edges as stored (React Flow shape).
- `nodes`, `tools`, `policy`, `providers`: the typed `data` of each node type.
- `templates`, `references`, `outputs`: what `{input}`, `{value}`, `{node.field}` mean.
- `expressions`: safe condition expressions.
- `graph`: scopes, order, ancestry and cycles of a graph.
- `validation`: `validate_workflow`, the report of everything wrong with a graph.

docs/workflow-model.md is the user-facing description of all of it.
"""

from shared.workflow.expressions import Condition, ExpressionError, compile_condition
from shared.workflow.graph import GraphIndex
from shared.workflow.model import NODE_TYPES, Edge, Node, Position, WorkflowGraph
from shared.workflow.nodes import NODE_DATA_MODELS, parse_node_data
from shared.workflow.templates import Reference, find_references, render, render_value
from shared.workflow.validation import Issue, ValidationReport, validate_workflow

__all__ = [
    "NODE_DATA_MODELS",
    "NODE_TYPES",
    "Condition",
    "Edge",
    "ExpressionError",
    "GraphIndex",
    "Issue",
    "Node",
    "Position",
    "Reference",
    "ValidationReport",
    "WorkflowGraph",
    "compile_condition",
    "find_references",
    "parse_node_data",
    "render",
    "render_value",
    "validate_workflow",
]
