"""Small graph builders for the workflow model's tests."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from shared.i18n import Language
from shared.workflow.model import WorkflowGraph
from shared.workflow.validation import ValidationReport, validate_workflow

# The seed's "完整工作流示例" (API.md), exactly as documented.
SEED_EXAMPLE: dict[str, Any] = {
    "name": "文本处理工作流",
    "description": "处理用户输入的文本",
    "nodes": [
        {
            "id": "start-1",
            "type": "start",
            "position": {"x": 0, "y": 0},
            "data": {"label": "开始"},
        },
        {
            "id": "llm-1",
            "type": "llm",
            "position": {"x": 200, "y": 0},
            "data": {
                "label": "LLM处理",
                "provider": "deepseek",
                "model": "deepseek-chat",
                "prompt": "请总结以下文本:{input}",
            },
        },
        {
            "id": "end-1",
            "type": "end",
            "position": {"x": 400, "y": 0},
            "data": {"label": "结束"},
        },
    ],
    "edges": [
        {"id": "e1", "source": "start-1", "target": "llm-1"},
        {"id": "e2", "source": "llm-1", "target": "end-1"},
    ],
}


def seed_graph() -> WorkflowGraph:
    return WorkflowGraph.model_validate(copy.deepcopy(SEED_EXAMPLE))


def node(node_id: str, node_type: str, parent: str | None = None, **data: Any) -> dict[str, Any]:
    built: dict[str, Any] = {"id": node_id, "type": node_type, "data": data}
    if parent is not None:
        built["parentId"] = parent
    return built


def edge(source: str, target: str, handle: str | None = None, edge_id: str | None = None):
    built: dict[str, Any] = {
        "id": edge_id or f"{source}->{target}" + (f":{handle}" if handle else ""),
        "source": source,
        "target": target,
    }
    if handle is not None:
        built["sourceHandle"] = handle
    return built


def chain(*node_ids: str) -> list[dict[str, Any]]:
    return [edge(a, b) for a, b in itertools.pairwise(node_ids)]


def llm(node_id: str, prompt: str = "hi", parent: str | None = None, **data: Any):
    return node(node_id, "llm", parent, prompt=prompt, **data)


def graph(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> WorkflowGraph:
    return WorkflowGraph.model_validate({"nodes": nodes, "edges": edges})


def linear(*middle: dict[str, Any]) -> WorkflowGraph:
    """start-1 → middle nodes in order → end-1."""
    nodes = [node("start-1", "start"), *middle, node("end-1", "end")]
    return graph(nodes, chain(*(n["id"] for n in nodes)))


def validate(g: WorkflowGraph, language: Language = "zh") -> ValidationReport:
    return validate_workflow(g, language)


def codes(issues: list[Any]) -> list[str]:
    return [issue.code for issue in issues]


def only(issues: list[Any], code: str) -> list[Any]:
    return [issue for issue in issues if issue.code == code]
