"""The graphs the benchmarks run, each with the output a correct run must produce."""

from __future__ import annotations

import itertools
from typing import Any

Graph = dict[str, Any]


def node(node_id: str, node_type: str, parent: str | None = None, **data: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "id": node_id,
        "type": node_type,
        "position": {"x": 0, "y": 0},
        "data": data,
    }
    if parent is not None:
        found["parentId"] = parent
    return found


def edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": f"{source}->{target}", "source": source, "target": target}
    if handle:
        found["sourceHandle"] = handle
    return found


def five_node() -> Graph:
    """start → transform → condition → transform → end; the false branch ends at once."""
    return {
        "name": "bench five nodes",
        "nodes": [
            node("start-1", "start"),
            node("t-1", "transform", template="{input.text}!"),
            node("c-1", "condition", expression="len({value}) > 3"),
            node("t-2", "transform", template={"shout": "{t-1}", "n": "{input.n}"}),
            node("end-1", "end", output="{t-2}"),
        ],
        "edges": [
            edge("start-1", "t-1"),
            edge("t-1", "c-1"),
            edge("c-1", "t-2", "true"),
            edge("c-1", "end-1", "false"),
            edge("t-2", "end-1"),
        ],
    }


def five_node_input(i: int) -> dict[str, Any]:
    # Every run gets its own input, so a result delivered to the wrong run is caught.
    return {"text": f"run-{i}", "n": i}


def five_node_output(i: int) -> dict[str, Any]:
    return {"shout": f"run-{i}!", "n": i}


def llm_pair(delay_s: float) -> Graph:
    """Two llm nodes in a row, each answered by the fake provider after `delay_s`."""
    prompt = f"[[delay={delay_s}]] {{input.text}}"
    return {
        "name": "bench two llm calls",
        "nodes": [
            node("start-1", "start"),
            node(
                "llm-1",
                "llm",
                provider="deepseek",
                model="deepseek-chat",
                prompt=prompt,
                stream=False,
            ),
            node(
                "llm-2",
                "llm",
                provider="deepseek",
                model="deepseek-chat",
                prompt=f"[[delay={delay_s}]] {{llm-1}}",
                stream=False,
            ),
            node("end-1", "end", output={"answer": "{llm-2}"}),
        ],
        "edges": [edge("start-1", "llm-1"), edge("llm-1", "llm-2"), edge("llm-2", "end-1")],
    }


def llm_pair_output(i: int) -> dict[str, Any]:
    return {"answer": f"ECHO: ECHO: run-{i}"}


def chain(length: int) -> Graph:
    """start → `length` transforms in a line → end (length + 2 nodes)."""
    ids = [f"t-{k}" for k in range(1, length + 1)]
    transforms = [node(ids[0], "transform", template="{input.text}")]
    transforms += [node(i, "transform", template="{value}") for i in ids[1:]]
    path = ["start-1", *ids, "end-1"]
    return {
        "name": f"bench chain of {length}",
        "nodes": [node("start-1", "start"), *transforms, node("end-1", "end")],
        "edges": [edge(a, b) for a, b in itertools.pairwise(path)],
    }


def chain_nodes(length: int) -> int:
    return length + 2


def loop(items: int) -> tuple[Graph, dict[str, Any]]:
    """start → loop (one transform in its body) → end, and its input of `items` items."""
    graph = {
        "name": f"bench loop over {items}",
        "nodes": [
            node("start-1", "start"),
            node("loop-1", "loop", items_path="{input.items}", max_iterations=max(items, 1)),
            node("body-1", "transform", parent="loop-1", template="{item}-{index}"),
            node("end-1", "end", output={"count": "{loop-1.count}"}),
        ],
        "edges": [edge("start-1", "loop-1"), edge("loop-1", "end-1")],
    }
    return graph, {"items": [f"i{k}" for k in range(items)]}
