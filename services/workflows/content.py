"""Workflow content (name, description, nodes, edges) and the deltas between two contents.

Events carry deltas, not copies: a change to one node of a 500-node workflow stores that node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Final

from shared.errors import PayloadTooLarge
from shared.i18n import Message

Item = dict[str, Any]  # a node or an edge, as the client sent it (React Flow shape)

# A workflow's content as stored (UTF-8 JSON): its creation is one event, and every run copies
# it into its own first event. Far beyond anything drawn; a bound on what one request may store.
MAX_CONTENT_BYTES: Final = 3 * 1024 * 1024


class WorkflowTooLarge(PayloadTooLarge):
    default_code = "WORKFLOW_TOO_LARGE"
    default_message = Message(
        "工作流内容过大:{size} 字节(最多 {limit})",
        "The workflow is too large: {size} bytes (at most {limit})",
    )


@dataclass(frozen=True)
class Content:
    name: str
    description: str
    nodes: list[Item] = field(default_factory=list)
    edges: list[Item] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "nodes": self.nodes,
            "edges": self.edges,
        }

    def check_size(self) -> None:
        """WorkflowTooLarge (413) when the content is over MAX_CONTENT_BYTES."""
        size = len(json.dumps(self.as_dict(), ensure_ascii=False).encode())
        if size > MAX_CONTENT_BYTES:
            raise WorkflowTooLarge(size=size, limit=MAX_CONTENT_BYTES)


def _items_delta(old: list[Item], new: list[Item]) -> dict[str, Any] | None:
    old_by_id = {item["id"]: item for item in old}
    new_ids = [item["id"] for item in new]
    upsert = [item for item in new if old_by_id.get(item["id"]) != item]
    remove = [item_id for item_id in old_by_id if item_id not in set(new_ids)]
    order_changed = [i for i in new_ids if i in old_by_id] != [
        item["id"] for item in old if item["id"] in set(new_ids)
    ]
    if not upsert and not remove and not order_changed:
        return None
    return {"upsert": upsert, "remove": remove, "order": new_ids}


def _apply_items(old: list[Item], delta: dict[str, Any] | None) -> list[Item]:
    if delta is None:
        return old
    by_id = {item["id"]: item for item in old}
    for item_id in delta["remove"]:
        by_id.pop(item_id, None)
    for item in delta["upsert"]:
        by_id[item["id"]] = item
    return [by_id[item_id] for item_id in delta["order"]]


def diff(old: Content, new: Content) -> dict[str, Any]:
    """The delta that turns `old` into `new`; empty when they are equal."""
    changes: dict[str, Any] = {}
    if new.name != old.name:
        changes["name"] = new.name
    if new.description != old.description:
        changes["description"] = new.description
    nodes = _items_delta(old.nodes, new.nodes)
    if nodes is not None:
        changes["nodes"] = nodes
    edges = _items_delta(old.edges, new.edges)
    if edges is not None:
        changes["edges"] = edges
    return changes


def apply(old: Content, changes: dict[str, Any]) -> Content:
    return Content(
        name=changes.get("name", old.name),
        description=changes.get("description", old.description),
        nodes=_apply_items(old.nodes, changes.get("nodes")),
        edges=_apply_items(old.edges, changes.get("edges")),
    )


def summarize(old: Content, changes: dict[str, Any]) -> str:
    """A one-line, human-readable account of a delta, for the versions list."""
    parts: list[str] = []
    if "name" in changes:
        parts.append(f"renamed to {changes['name']!r}")
    if "description" in changes:
        parts.append("description changed")
    for kind in ("nodes", "edges"):
        delta = changes.get(kind)
        if delta is None:
            continue
        before = {item["id"] for item in getattr(old, kind)}
        added = [item["id"] for item in delta["upsert"] if item["id"] not in before]
        changed = [item["id"] for item in delta["upsert"] if item["id"] in before]
        singular = kind[:-1]
        for sign, ids in (("+", added), ("~", changed), ("-", delta["remove"])):
            if ids:
                shown = ", ".join(ids[:5]) + (", …" if len(ids) > 5 else "")
                parts.append(f"{sign}{len(ids)} {singular}{'s' if len(ids) != 1 else ''} ({shown})")
        if not added and not changed and not delta["remove"]:
            parts.append(f"{kind} reordered")
    return "; ".join(parts) or "no content change"
