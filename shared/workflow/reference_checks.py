"""Validation of template references (unknown, not upstream, could mean two things) and of
input fields nobody reads.

Every referring node's visible nodes come from `GraphIndex.is_upstream`, which is memoized per
scope, so checking all references costs about one pass over the graph plus one bit test each.
What flows into each node (`output_shapes.OutputShapes`) is computed once per graph too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.workflow.expressions import ExpressionError, compile_condition
from shared.workflow.graph import GraphIndex
from shared.workflow.issues import IssueCollector
from shared.workflow.nodes import NODE_DATA_MODELS
from shared.workflow.output_shapes import OutputShapes, Shape
from shared.workflow.references import RefKind, classify_reference, loop_variables_of
from shared.workflow.template_fields import TemplateText, template_texts
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
        self.shapes = OutputShapes(index)

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
                    kind = self._check(node_id, text.field, reference, scope_loops, body_of)
                    self._check_meaning(node_id, text, reference, kind, scope_loops)
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
        where = TemplateText("expression", expression)
        for reference in condition.references:
            kind = self._check(node_id, "expression", reference, loops, None)
            self._check_meaning(node_id, where, reference, kind, loops)

    def _check(
        self,
        node_id: str,
        where: str,
        reference: Reference,
        loops: list[str],
        body_of: str | None,
    ) -> RefKind:
        frames = [(loop_id, self._item_variable(loop_id)) for loop_id in loops]
        kind = classify_reference(reference, self.index.nodes_by_id, loop_variables_of(frames))
        params = {"ref": reference.raw}
        if kind is RefKind.UNKNOWN:
            self.issues.error(
                "UNKNOWN_REFERENCE", node_id=node_id, field=where, root=reference.root, **params
            )
            return kind
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
        return kind

    # -- a bare name whose meaning depends on the run's data ----------------------------------

    def _check_meaning(
        self,
        node_id: str,
        text: TemplateText,
        reference: Reference,
        kind: RefKind,
        loops: list[str],
    ) -> None:
        """AMBIGUOUS_REFERENCE where a bare name reads a field of the upstream output on some
        runs and means something else on others (the upstream may or may not have that key).
        The field default "{value}" of an output or end node is not the user's and means the
        whole output at run time, so it is never ambiguous."""
        if reference.path or text.implicit:
            return
        if kind not in (RefKind.INPUT, RefKind.VALUE, RefKind.SHORTCUT):
            return
        if text.in_body:
            shape = self.shapes.upstream_of_body_exits(node_id)
            sources = self.index.exit_nodes(node_id)
        else:
            if not self.index.incoming[node_id] and self.index.scope_of(node_id) is None:
                return  # no upstream node: unreachable, reported as such
            shape = self.shapes.upstream(node_id)
            sources = self.index.predecessors(node_id)
        name = reference.root
        if shape.has(name) is not None:
            return
        if kind is RefKind.SHORTCUT and shape.is_input:
            return  # the upstream output is input_data itself: both readings agree
        as_field, as_whole = self._explicit(name, sources, loops, shape)
        variant = {RefKind.INPUT: "input", RefKind.VALUE: "value"}.get(kind, "shortcut")
        self.issues.warning(
            f"AMBIGUOUS_REFERENCE:{variant}",
            node_id=node_id,
            field=text.field,
            node=node_id,
            ref=reference.raw,
            name=name,
            as_field=as_field,
            as_whole=as_whole,
            as_input="{input." + name + "}",
        )

    def _explicit(
        self, name: str, sources: list[str], loops: list[str], shape: Shape
    ) -> tuple[str, str]:
        """Explicit references to the upstream output's field `name` and to the whole of
        what `{name}` falls back to, for the warning to suggest."""
        whole_input = "{" + (self._input_carrier(sources or loops[:1]) or "input") + "}"
        if not sources:  # a body's first node: what flows in is the current item
            item = self._item_variable(loops[-1]) if loops else "item"
            whole = whole_input if name == "input" else "{" + item + "}"
            return "{" + item + "." + name + "}", whole
        source = sources[0]
        source_type = self.index.nodes_by_id[source].type
        if shape.is_input or source_type in _INPUT_CARRIERS:
            field = "{input." + name + "}"
        elif source_type == "condition":
            field = "{" + source + ".value." + name + "}"  # what the condition passed on
        else:
            field = "{" + source + "." + name + "}"
        whole = whole_input if name == "input" else "{" + source + "}"
        return field, whole

    def _input_carrier(self, nodes: list[str]) -> str | None:
        """A node whose output is the whole input_data as `{input}` sees it, at or upstream
        of `nodes`: an input node (defaults filled in), else the start node."""
        starts = self.index.nodes_of_type("start")
        for candidate in [*self.index.nodes_of_type("input"), *starts]:
            if any(n == candidate or self.index.is_upstream(candidate, n) for n in nodes):
                return candidate
        return starts[0] if starts else None

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
