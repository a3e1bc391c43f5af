"""What the validator can know, before a run, of the keys of what flows into each node.

A bare name (`{value}`, `{input}`, `{text}`) reads a field of the upstream output when that
output is an object with that key, and otherwise means something else (references.py). The
validator warns where that depends on the run's data. For that it needs, per node, the keys
its upstream output certainly has and the keys it may have: an llm's record always has
exactly `text, model, usage, finish_reason`; start's output is input_data, which may have any
key; a transform's mapping has its mapping's keys.

Shapes follow the executor's rules (`RuntimeContext.upstream_output` and `value`): one
upstream node hands on its record (a condition what it passed through); several that ran
give `{id: primary output}`; none gives the loop item in a body, else input_data. A failure
edge carries `{"error": ...}`, and `on_error: "continue"` may hand on `default_output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from shared.workflow.graph import GraphIndex
from shared.workflow.model import HANDLE_ERROR
from shared.workflow.outputs import PASS_THROUGH_TYPES
from shared.workflow.templates import single_reference


@dataclass(frozen=True)
class Shape:
    """The keys a value `certain`ly has and may `possible`y have (None: any key at all). A
    value that is no object has neither. `is_input`: the value is input_data itself."""

    certain: frozenset[str] = frozenset()
    possible: frozenset[str] | None = frozenset()
    is_input: bool = False

    def union(self, other: Shape) -> Shape:
        """A value that is one or the other."""
        possible = (
            None
            if self.possible is None or other.possible is None
            else self.possible | other.possible
        )
        return Shape(self.certain & other.certain, possible, self.is_input and other.is_input)

    def has(self, key: str) -> bool | None:
        """True: certainly has `key`; False: certainly not; None: it depends on the run."""
        if key in self.certain:
            return True
        if self.possible is not None and key not in self.possible:
            return False
        return None


def keys(*names: str) -> Shape:
    return Shape(frozenset(names), frozenset(names))


NOT_OBJECT: Final = Shape()
ANY_OBJECT: Final = Shape(possible=None)
INPUT_DATA: Final = Shape(possible=None, is_input=True)
FAILED: Final = keys("error")
# Output records of the node types whose record the platform builds (docs/workflow-model.md).
_RECORDS: Final[dict[str, Shape]] = {
    "llm": keys("text", "model", "usage", "finish_reason"),
    "agent": keys("text", "tool_calls", "iterations", "usage", "model"),
    "loop": keys("results", "errors", "count"),
    "condition": keys("result", "branch", "value"),
    "end": keys("output"),
}
_DATA_SOURCE: Final = keys("data", "count", "truncated", "columns")
# Types whose primary output is one field of the record that is never an object.
_TEXT_OR_LIST_PRIMARY: Final = frozenset({"llm", "agent", "loop"})


def shape_of_template(template: Any) -> Shape:
    """The shape of what a template field renders to: an object keeps its keys; a string that
    is exactly one reference is whatever that reference holds; other strings and values are
    no objects."""
    if isinstance(template, dict):
        return keys(*(str(key) for key in template))
    if isinstance(template, str) and single_reference(template) is not None:
        return ANY_OBJECT
    return NOT_OBJECT


class OutputShapes:
    """Shapes of every node's output, computed once per graph in each scope's order."""

    def __init__(self, index: GraphIndex) -> None:
        self.index = index
        self._record: dict[str, Shape] = {}
        self._primary: dict[str, Shape] = {}
        self._handed_on: dict[str, Shape] = {}
        for scope in index.scopes():
            order = index.topological_order(scope)
            # A cycle is reported as an error; its nodes' shapes are unknown meanwhile.
            for node_id in order if order is not None else index.scope_nodes(scope):
                self._compute(node_id)

    # -- what flows into a node ---------------------------------------------------------------

    def upstream(self, node_id: str) -> Shape:
        """The shape of what the node's bare names read (`RuntimeContext.upstream_output`)."""
        edges = self.index.incoming[node_id]
        if not edges:
            return self._nothing_upstream(node_id)
        shape: Shape | None = None
        for edge in edges:
            one = self._through(edge.source, edge.sourceHandle, handed_on=True)
            shape = one if shape is None else shape.union(one)
        assert shape is not None
        return self._with_join(shape, [edge.source for edge in edges])

    def upstream_of_body_exits(self, loop_id: str) -> Shape:
        """What a loop's `output` template reads: the body's last nodes (else the item)."""
        exits = self.index.exit_nodes(loop_id)
        if not exits:
            return ANY_OBJECT
        shape = self._handed_on.get(exits[0], ANY_OBJECT)
        for exit_id in exits[1:]:
            shape = shape.union(self._handed_on.get(exit_id, ANY_OBJECT))
        return self._with_join(shape, exits)

    def _value_of(self, node_id: str) -> Shape:
        """The shape of `RuntimeContext.value()` for the node: the upstream's primary."""
        edges = self.index.incoming[node_id]
        if not edges:
            return self._nothing_upstream(node_id)
        shape: Shape | None = None
        for edge in edges:
            one = self._through(edge.source, edge.sourceHandle, handed_on=False)
            shape = one if shape is None else shape.union(one)
        assert shape is not None
        return self._with_join(shape, [edge.source for edge in edges])

    def _nothing_upstream(self, node_id: str) -> Shape:
        # A body's first nodes read the current item; anything else (start) input_data.
        return ANY_OBJECT if self.index.scope_of(node_id) is not None else INPUT_DATA

    @staticmethod
    def _with_join(shape: Shape, sources: list[str]) -> Shape:
        # When several upstream nodes ran, what flows in is {id: output}.
        distinct = frozenset(sources)
        return shape.union(Shape(frozenset(), distinct)) if len(distinct) > 1 else shape

    def _through(self, source: str, handle: str | None, *, handed_on: bool) -> Shape:
        if handle == HANDLE_ERROR:
            return FAILED
        found = (self._handed_on if handed_on else self._primary).get(source)
        return found if found is not None else ANY_OBJECT  # in a cycle

    # -- what a node produces -----------------------------------------------------------------

    def _compute(self, node_id: str) -> None:
        node = self.index.nodes_by_id[node_id]
        data = node.data
        record = self._record_shape(node_id, node.type, data)
        if node.type in PASS_THROUGH_TYPES:
            primary = self._value_of(node_id)
        elif node.type in _TEXT_OR_LIST_PRIMARY:
            primary = NOT_OBJECT
        else:
            primary = record
        handed_on = primary if node.type in PASS_THROUGH_TYPES else record
        if data.get("on_error") == "continue":  # the run may carry on with default_output
            default = data.get("default_output")  # a value as it is, never rendered
            fallback = keys(*map(str, default)) if isinstance(default, dict) else NOT_OBJECT
            record, primary, handed_on = (
                record.union(fallback),
                primary.union(fallback),
                handed_on.union(fallback),
            )
        self._record[node_id] = record
        self._primary[node_id] = primary
        self._handed_on[node_id] = handed_on

    def _record_shape(self, node_id: str, node_type: str, data: dict[str, Any]) -> Shape:
        if node_type == "start":
            return INPUT_DATA
        if node_type == "input":
            return self._input_shape(data)
        if node_type == "llm" and data.get("response_format") == "json":
            return keys("text", "model", "usage", "finish_reason", "json")
        if node_type in _RECORDS:
            return _RECORDS[node_type]
        if node_type == "transform":
            return self._transform_shape(node_id, data)
        if node_type == "output":
            if isinstance(data.get("mapping"), dict):
                return shape_of_template(data["mapping"])
            if data.get("value") is not None:
                return shape_of_template(data["value"])
            return self._value_of(node_id)  # no mapping or value: `{value}` as it is
        return ANY_OBJECT  # an unknown type, reported as an error anyway

    @staticmethod
    def _input_shape(data: dict[str, Any]) -> Shape:
        # Declared fields that are required or have a default are always there (the node
        # fails otherwise); undeclared keys pass through, so any other key may be too.
        fields = data.get("fields")
        present = [
            field["name"]
            for field in (fields if isinstance(fields, list) else [])
            if isinstance(field, dict)
            and isinstance(field.get("name"), str)
            and (field.get("required") or field.get("default") is not None)
        ]
        return Shape(frozenset(present), None, is_input=True)

    def _transform_shape(self, node_id: str, data: dict[str, Any]) -> Shape:
        mode = data.get("mode", "template")
        if mode == "template":
            return shape_of_template(data.get("template"))
        if mode == "mapping":
            return shape_of_template(data.get("mapping") or {})
        if mode == "data_source":
            return _DATA_SOURCE
        return ANY_OBJECT  # JMESPath may pick anything out of its source
