"""What a reference means: the rules the validator checks and the executor resolves by.

A bare name reads what flows into the node, as n8n's `$json.field` does: `{name}` is field
`name` of the upstream output (`outputs.handed_on`: the upstream node's record, or what a
condition passed through) when that output is an object with that key. Only otherwise does
a name fall back to its built-in meaning. Roots, first match wins:

1. `input`: `{input}` is the upstream output's field `input` if it has one, else the whole
   input_data (after input nodes applied their defaults); `{input.x}` is always input_data's x.
2. `value`: `{value}` is the upstream output's field `value` if it has one, else the primary
   output of the immediate upstream node; `{value.x}` is always a path into the upstream
   node's output record.
3. a loop variable, inside a loop body: the item variable of any enclosing loop (inner ones
   shadow outer ones) and `index`, the innermost loop's 0-based position. These are never
   read from the upstream output (`input`, `value` and `index` cannot be item variables).
4. a node id: `{llm-1}` is its primary output, `{llm-1.usage.total_tokens}` a path into its
   output record. Inside a loop's body, the loop's own id means the current iteration
   (`{loop-1.index}`, `{loop-1.item}`, `{loop-1.count}`), so outer indexes stay reachable.
5. any other single name without `-` (`{text}`): the upstream output's field, else
   input_data's field. Anything else is unknown.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.workflow.outputs import handed_on, primary_output
from shared.workflow.templates import Reference, lookup_path


class RefKind(StrEnum):
    INPUT = "input"
    VALUE = "value"
    LOOP_ITEM = "loop_item"
    LOOP_INDEX = "loop_index"
    NODE = "node"
    SHORTCUT = "shortcut"
    UNKNOWN = "unknown"


def classify_reference(
    reference: Reference,
    node_ids: Collection[str],
    loop_variables: Mapping[str, str] | None = None,
) -> RefKind:
    """The kind of `reference`; `loop_variables` maps visible loop variable names to loop ids."""
    root = reference.root
    if root == "input":
        return RefKind.INPUT
    if root == "value":
        return RefKind.VALUE
    if loop_variables and root in loop_variables:
        return RefKind.LOOP_INDEX if root == "index" else RefKind.LOOP_ITEM
    if root in node_ids:
        return RefKind.NODE
    # A single plain name is a field shortcut; one with "-" looks like a mistyped node id.
    if not reference.path and "-" not in root:
        return RefKind.SHORTCUT
    return RefKind.UNKNOWN


@dataclass(frozen=True)
class LoopFrame:
    """One enclosing loop's current iteration."""

    loop_id: str
    item_variable: str
    item: Any
    index: int
    count: int

    def as_record(self) -> dict[str, Any]:
        return {"item": self.item, "index": self.index, "count": self.count}


def loop_variables_of(frames: Sequence[tuple[str, str]]) -> dict[str, str]:
    """Visible variable name -> loop id, for enclosing (loop id, item variable), outermost first."""
    variables: dict[str, str] = {}
    for loop_id, item_variable in frames:
        variables[item_variable] = loop_id
    if frames:
        variables["index"] = frames[-1][0]
    return variables


@dataclass(frozen=True)
class RuntimeContext:
    """Everything a node's templates may read while it runs; `resolve` follows the rules above.

    A reference to something that has no value (a skipped node, a missing field) is None.
    """

    input_data: Mapping[str, Any]
    node_types: Mapping[str, str]  # every node of the workflow, to recognise node ids
    records: Mapping[str, Any]  # output records of the nodes that ran and are visible here
    upstream: Sequence[str] = ()  # the direct upstream nodes that ran
    loops: Sequence[LoopFrame] = field(default_factory=tuple)  # outermost first

    def value(self) -> Any:
        """`{value}`: the upstream's primary output; several upstream nodes give {id: output};
        none gives the current loop item in a loop body, else input_data."""
        ran = [node_id for node_id in self.upstream if node_id in self.records]
        if len(ran) == 1:
            return self._primary(ran[0])
        if ran:
            return {node_id: self._primary(node_id) for node_id in ran}
        if self.loops:
            return self.loops[-1].item
        return dict(self.input_data)

    def _primary(self, node_id: str) -> Any:
        return primary_output(self.node_types.get(node_id, ""), self.records.get(node_id))

    def _upstream_record(self) -> Any:
        """What `{value.x}` paths read: the one upstream node's record, else `value()`."""
        ran = [node_id for node_id in self.upstream if node_id in self.records]
        return self.records[ran[0]] if len(ran) == 1 else self.value()

    def upstream_output(self) -> Any:
        """What flows into the node, whose fields bare names read: the one upstream node's
        output as it hands it on (a condition's: what it passed through), else `value()`
        (several upstream nodes: {id: output}; none: the loop item or input_data)."""
        ran = [node_id for node_id in self.upstream if node_id in self.records]
        if len(ran) == 1:
            return handed_on(self.node_types.get(ran[0], ""), self.records[ran[0]])
        return self.value()

    def _field(self, name: str) -> tuple[bool, Any]:
        """(True, the field) when the upstream output is an object with key `name`."""
        upstream = self.upstream_output()
        if isinstance(upstream, dict) and name in upstream:
            return True, upstream[name]
        return False, None

    def resolve(self, reference: Reference) -> Any:
        frames = [(frame.loop_id, frame.item_variable) for frame in self.loops]
        kind = classify_reference(reference, self.node_types, loop_variables_of(frames))
        root, path = reference.root, reference.path
        if kind is RefKind.INPUT:
            if not path:
                found, field_value = self._field(root)
                return field_value if found else dict(self.input_data)
            return lookup_path(dict(self.input_data), path)
        if kind is RefKind.VALUE:
            if path:
                return lookup_path(self._upstream_record(), path)
            found, field_value = self._field(root)
            return field_value if found else self.value()
        if kind is RefKind.LOOP_INDEX:
            return lookup_path(self.loops[-1].index, path)
        if kind is RefKind.LOOP_ITEM:
            frame = next(f for f in reversed(self.loops) if f.item_variable == root)
            return lookup_path(frame.item, path)
        if kind is RefKind.NODE:
            for frame in self.loops:
                if frame.loop_id == root:
                    return lookup_path(frame.as_record(), path)
            if root not in self.records:
                return None
            return lookup_path(self.records[root], path) if path else self._primary(root)
        if kind is RefKind.SHORTCUT:
            found, field_value = self._field(root)
            return field_value if found else self.input_data.get(root)
        return None
