"""`validate_workflow`: everything wrong with a workflow graph, each issue naming its node or
edge. Errors block execution; warnings do not. Codes are stable English identifiers; messages
are Chinese by default and English on request. docs/workflow-model.md lists every code.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shared.i18n import Language, Message
from shared.workflow.config_errors import CONFIG_MESSAGES
from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.graph import GraphIndex
from shared.workflow.issues import Issue, IssueCollector, ValidationReport
from shared.workflow.model import (
    HANDLE_ERROR,
    HANDLE_FALSE,
    HANDLE_OUTPUT,
    HANDLE_TRUE,
    MAX_EDGES,
    MAX_LOOP_NESTING,
    MAX_NODES,
    NODE_TYPES,
    WorkflowGraph,
)
from shared.workflow.nodes import NODE_DATA_MODELS, LoopData, NodeData
from shared.workflow.reference_checks import check_references
from shared.workflow.validation_messages import PYDANTIC_MESSAGES

__all__ = ["Issue", "ValidationReport", "validate_workflow"]

_CONDITION_HANDLES = (HANDLE_TRUE, HANDLE_FALSE, HANDLE_ERROR)
_OTHER_HANDLES = (None, HANDLE_OUTPUT, HANDLE_ERROR)


def validate_workflow(graph: WorkflowGraph, language: Language = "zh") -> ValidationReport:
    issues = IssueCollector(language)
    if len(graph.nodes) > MAX_NODES or len(graph.edges) > MAX_EDGES:
        # Nothing else is checked: the size itself is the problem, and checking is work.
        issues.error(
            "TOO_LARGE",
            nodes=len(graph.nodes),
            edges=len(graph.edges),
            max_nodes=MAX_NODES,
            max_edges=MAX_EDGES,
        )
        return issues.report()
    index = GraphIndex(graph)
    depth = index.loop_nesting()
    if depth > MAX_LOOP_NESTING:
        # Also the only check: the rest costs work in proportion to the nesting.
        issues.error("LOOPS_TOO_DEEP", depth=depth, limit=MAX_LOOP_NESTING)
        return issues.report()
    _Validation(index, issues).run()
    return issues.report()


class _Validation:
    def __init__(self, index: GraphIndex, issues: IssueCollector) -> None:
        self.index = index
        self.issues = issues
        self.configs: dict[str, BaseModel] = {}

    def run(self) -> None:
        self._check_identity()
        self._check_start_and_end()
        self._check_edges()
        self._check_configs()
        self._check_cycles()
        check_references(self.index, self.issues)
        self._check_error_edges()
        self._warn_unreachable()
        self._warn_dead_ends()
        self._warn_missing_branches()
        self._warn_empty_loops()

    # -- nodes --------------------------------------------------------------------------------

    def _check_identity(self) -> None:
        index, issues = self.index, self.issues
        for node in index.duplicate_nodes:
            issues.error("DUPLICATE_NODE_ID", node_id=node.id, node=node.id)
        for edge in index.duplicate_edges:
            issues.error("DUPLICATE_EDGE_ID", edge_id=edge.id, edge=edge.id)
        for node_id, node in index.nodes_by_id.items():
            if node.type not in NODE_TYPES:
                issues.error(
                    "UNKNOWN_NODE_TYPE",
                    node_id=node_id,
                    field="type",
                    node=node_id,
                    type=node.type,
                    types=", ".join(NODE_TYPES),
                )
        for problem in index.invalid_parents:
            issues.error(
                f"INVALID_PARENT:{problem.problem}",
                node_id=problem.node_id,
                field="parentId",
                node=problem.node_id,
                parent=problem.parent_id,
                type=index.nodes_by_id[problem.node_id].type,
            )

    def _check_start_and_end(self) -> None:
        starts = self.index.nodes_of_type("start")
        if not starts:
            self.issues.error("NO_START_NODE")
        for extra in starts[1:]:
            self.issues.error("MULTIPLE_START_NODES", node_id=extra, node=extra, first=starts[0])
        if not self.index.nodes_of_type("end"):
            self.issues.error("NO_END_NODE")

    def _check_configs(self) -> None:
        for node_id, node in self.index.nodes_by_id.items():
            model = NODE_DATA_MODELS.get(node.type)
            if model is None:
                continue
            try:
                self.configs[node_id] = model.model_validate(node.data)
            except ValidationError as exc:
                for error in exc.errors():
                    self._config_issue(node_id, node.type, node.data, error)

    def _config_issue(
        self, node_id: str, node_type: str, data: dict[str, Any], error: ErrorDetails
    ) -> None:
        where = _data_path(data, error["loc"])
        language = self.issues.language
        detail = _describe(error, language)
        if error["type"] == "invalid_expression":
            # A condition's own error text is localized; JMESPath's is English only.
            if node_type == "condition" and isinstance(data.get("expression"), str):
                detail = _expression_detail(data["expression"], language) or detail
            self.issues.error(
                "INVALID_EXPRESSION",
                node_id=node_id,
                field=where,
                detail=detail,
            )
            return
        key = "INVALID_NODE_CONFIG" if where else "INVALID_NODE_CONFIG:whole"
        self.issues.error(key, node_id=node_id, field=where, node=node_id, detail=detail)

    def _check_cycles(self) -> None:
        for scope in self.index.scopes():
            for cycle in self.index.find_cycles(scope):
                path = " → ".join([*cycle, cycle[0]])
                if scope is None:
                    self.issues.error("CYCLE", node_id=cycle[0], path=path)
                else:
                    self.issues.error("CYCLE:body", node_id=cycle[0], path=path, loop=scope)

    # -- edges --------------------------------------------------------------------------------

    def _check_edges(self) -> None:
        index, issues = self.index, self.issues
        for edge in index.dangling_edges:
            if edge.source not in index.nodes_by_id:
                issues.error(
                    "EDGE_SOURCE_MISSING", edge_id=edge.id, edge=edge.id, source=edge.source
                )
            if edge.target not in index.nodes_by_id:
                issues.error(
                    "EDGE_TARGET_MISSING", edge_id=edge.id, edge=edge.id, target=edge.target
                )
        for edge in index.self_loops:
            issues.error(
                "SELF_LOOP", node_id=edge.source, edge_id=edge.id, edge=edge.id, node=edge.source
            )
        for edge in index.cross_scope_edges:
            issues.error(
                "CROSS_SCOPE_EDGE",
                edge_id=edge.id,
                edge=edge.id,
                source=edge.source,
                target=edge.target,
            )
        seen: dict[tuple[str, str | None, str], str] = {}
        for edge in index.edges_by_id.values():
            source = index.nodes_by_id.get(edge.source)
            if source is None:
                continue
            self._check_handle(edge.id, edge.source, source.type, edge.sourceHandle)
            if source.type == "end":
                issues.error(
                    "EDGE_FROM_END",
                    node_id=edge.source,
                    edge_id=edge.id,
                    edge=edge.id,
                    node=edge.source,
                )
            target = index.nodes_by_id.get(edge.target)
            if target is not None and target.type == "start":
                issues.error(
                    "EDGE_INTO_START",
                    node_id=edge.target,
                    edge_id=edge.id,
                    edge=edge.id,
                    node=edge.target,
                )
            key = (edge.source, edge.sourceHandle, edge.target)
            if key in seen:
                issues.warning("DUPLICATE_EDGE", edge_id=edge.id, edge=edge.id, other=seen[key])
            else:
                seen[key] = edge.id

    def _check_handle(self, edge_id: str, node_id: str, node_type: str, handle: str | None) -> None:
        if node_type not in NODE_TYPES:
            return
        allowed = _CONDITION_HANDLES if node_type == "condition" else _OTHER_HANDLES
        if handle not in allowed:
            self.issues.error(
                "INVALID_HANDLE",
                node_id=node_id,
                edge_id=edge_id,
                field="sourceHandle",
                edge=edge_id,
                handle="null" if handle is None else handle,
                node=node_id,
                type=node_type,
                allowed=", ".join("null" if name is None else name for name in allowed),
            )

    def _check_error_edges(self) -> None:
        for node_id, config in self.configs.items():
            if not isinstance(config, NodeData):
                continue
            error_edges = [
                edge for edge in self.index.outgoing[node_id] if edge.sourceHandle == HANDLE_ERROR
            ]
            if config.on_error == "error_edge" and not error_edges:
                self.issues.error(
                    "MISSING_ERROR_EDGE", node_id=node_id, field="on_error", node=node_id
                )
            elif config.on_error != "error_edge":
                for edge in error_edges:
                    self.issues.warning(
                        "ERROR_EDGE_IGNORED",
                        node_id=node_id,
                        edge_id=edge.id,
                        node=node_id,
                        edge=edge.id,
                    )

    # -- warnings -----------------------------------------------------------------------------

    def _warn_unreachable(self) -> None:
        starts = self.index.nodes_of_type("start")
        if not starts:
            return  # NO_START_NODE says it all
        reached = self.index.reachable_from(starts)
        for node_id in self.index.nodes_by_id:
            if node_id not in reached:
                self.issues.warning("UNREACHABLE_NODE", node_id=node_id, node=node_id)

    def _warn_dead_ends(self) -> None:
        for node_id in self.index.top_level:
            node_type = self.index.nodes_by_id[node_id].type
            if node_type == "end" or node_type not in NODE_TYPES:
                continue
            if not any(edge.sourceHandle != HANDLE_ERROR for edge in self.index.outgoing[node_id]):
                self.issues.warning("DEAD_END", node_id=node_id, node=node_id)

    def _warn_missing_branches(self) -> None:
        for node_id in self.index.nodes_of_type("condition"):
            for branch in (HANDLE_TRUE, HANDLE_FALSE):
                if not self.index.successors(node_id, branch):
                    self.issues.warning(
                        "MISSING_BRANCH", node_id=node_id, node=node_id, branch=branch
                    )

    def _warn_empty_loops(self) -> None:
        for node_id, config in self.configs.items():
            if isinstance(config, LoopData) and not self.index.children.get(node_id):
                self.issues.warning("EMPTY_LOOP_BODY", node_id=node_id, node=node_id)


def _describe(error: ErrorDetails, language: Language) -> str:
    """A pydantic error in the user's language."""
    context: dict[str, Any] = dict(error.get("ctx") or {})
    message: Message | None = CONFIG_MESSAGES.get(error["type"]) or PYDANTIC_MESSAGES.get(
        error["type"]
    )
    if message is None:
        return error["msg"]
    try:
        return message.render(language, **context)
    except (KeyError, IndexError):
        return error["msg"]


def _expression_detail(expression: str, language: Language) -> str | None:
    try:
        compile_condition(expression)
    except ExpressionError as exc:
        return exc.render(language)
    return None


def _data_path(data: Any, loc: tuple[int | str, ...]) -> str | None:
    """The error's location as a dotted path in `data`, without the union tags pydantic adds
    (`tools.0.calculator.x` is `tools.0.x` in the user's data)."""
    parts: list[str] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part not in current and current.get("type") == part:
            continue  # a discriminated union's tag, not a key
        parts.append(str(part))
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        else:
            current = None
    return ".".join(parts) or None
