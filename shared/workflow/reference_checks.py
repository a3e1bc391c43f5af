"""Validation of template references (unknown, not upstream) and of input fields nobody reads.

Every referring node's visible nodes come from `GraphIndex.is_upstream`, which is memoized per
scope, so checking all references costs about one pass over the graph plus one bit test each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.graph import GraphIndex
from shared.workflow.issues import IssueCollector
from shared.workflow.nodes import NODE_DATA_MODELS
from shared.workflow.references import RefKind, classify_reference, loop_variables_of
from shared.workflow.template_fields import template_texts
from shared.workflow.templates import Reference, find_references

_JMESPATH_NAME = re.compile(r"[^\W\d]\w*")
# Whole-object outputs: referencing these without a path reads every input field.
_INPUT_CARRIERS = frozenset({"input", "start"})


@dataclass
class _InputUsage:
    names: set[str] = field(default_factory=set)
    everything: bool = False

    def read(self, path: tuple[str, ...]) -> None:
        if path:
            self.names.add(path[0])
        else:
            self.everything = True


class _ReferenceCheck:
    def __init__(self, index: GraphIndex, issues: IssueCollector) -> None:
        self.index = index
        self.issues = issues
        self.usage = _InputUsage()

    def _item_variable(self, loop_id: str) -> str:
        name = self.index.nodes_by_id[loop_id].data.get("item_variable", "item")
        return name if isinstance(name, str) else "item"

    def run(self) -> None:
        for node_id, node in self.index.nodes_by_id.items():
            if node.type not in NODE_DATA_MODELS:
                continue
            loops = self.index.enclosing_loops(node_id)
            for text in template_texts(node.type, node.data):
                body_of = node_id if text.in_body else None
                scope_loops = [*loops, node_id] if body_of else loops
                for reference in find_references(text.text):
                    self._check(node_id, text.field, reference, scope_loops, body_of)
            if node.type == "condition":
                self._check_expression(node_id, node.data.get("expression"), loops)
            if node.type == "transform" and node.data.get("mode") == "jmespath":
                # JMESPath names fields without braces; count its names as reads, loosely.
                expression = node.data.get("expression")
                if isinstance(expression, str):
                    self.usage.names.update(_JMESPATH_NAME.findall(expression))
        self._warn_unused_inputs()

    def _check_expression(self, node_id: str, expression: Any, loops: list[str]) -> None:
        if not isinstance(expression, str):
            return
        try:
            condition = compile_condition(expression)
        except ExpressionError:
            return  # reported as INVALID_EXPRESSION with the node's config
        for reference in condition.references:
            self._check(node_id, "expression", reference, loops, None)

    def _check(
        self,
        node_id: str,
        where: str,
        reference: Reference,
        loops: list[str],
        body_of: str | None,
    ) -> None:
        frames = [(loop_id, self._item_variable(loop_id)) for loop_id in loops]
        kind = classify_reference(reference, self.index.nodes_by_id, loop_variables_of(frames))
        params = {"ref": reference.raw}
        if kind is RefKind.UNKNOWN:
            self.issues.error(
                "UNKNOWN_REFERENCE", node_id=node_id, field=where, root=reference.root, **params
            )
            return
        if kind is RefKind.INPUT or kind is RefKind.SHORTCUT:
            self.usage.read(reference.path if kind is RefKind.INPUT else (reference.root,))
        elif kind is RefKind.VALUE:
            # Only the entry of a body (no predecessors) reads the loop item instead.
            types = {self.index.nodes_by_id[p].type for p in self.index.predecessors(node_id)}
            if types & _INPUT_CARRIERS and not body_of:
                self.usage.read(reference.path)
        elif kind is RefKind.NODE:
            target = reference.root
            if self.index.nodes_by_id[target].type in _INPUT_CARRIERS:
                self.usage.read(reference.path)
            if not self._visible(target, node_id, body_of):
                self._not_upstream(node_id, where, target, params)

    def _visible(self, target: str, node_id: str, body_of: str | None) -> bool:
        if body_of is not None:
            # A loop's per-iteration output sees its whole body and the loop's upstream.
            if target == body_of or self.index.scope_of(target) == body_of:
                return True
            return self.index.is_upstream(target, body_of)
        # In a cycle a node is its own ancestor; a self-reference is wrong all the same.
        return target != node_id and self.index.is_upstream(target, node_id)

    def _not_upstream(self, node_id: str, where: str, target: str, params: dict[str, Any]) -> None:
        if target == node_id:
            key, extra = "REFERENCE_NOT_UPSTREAM:self", {}
        else:
            enclosing = set(self.index.enclosing_loops(node_id)) | {node_id}
            hidden_in = [
                loop for loop in self.index.enclosing_loops(target) if loop not in enclosing
            ]
            if hidden_in:
                key, extra = "REFERENCE_NOT_UPSTREAM:body", {"loop": hidden_in[0]}
            else:
                key, extra = "REFERENCE_NOT_UPSTREAM", {}
        self.issues.error(key, node_id=node_id, field=where, target=target, **params, **extra)

    def _warn_unused_inputs(self) -> None:
        if self.usage.everything:
            return
        for node_id in self.index.nodes_of_type("input"):
            fields = self.index.nodes_by_id[node_id].data.get("fields")
            if not isinstance(fields, list):
                continue
            for position, declared in enumerate(fields):
                name = declared.get("name") if isinstance(declared, dict) else None
                if isinstance(name, str) and name not in self.usage.names:
                    self.issues.warning(
                        "UNUSED_INPUT",
                        node_id=node_id,
                        field=f"fields.{position}",
                        node=node_id,
                        name=name,
                    )


def check_references(index: GraphIndex, issues: IssueCollector) -> None:
    """Report UNKNOWN_REFERENCE, REFERENCE_NOT_UPSTREAM and UNUSED_INPUT."""
    _ReferenceCheck(index, issues).run()
