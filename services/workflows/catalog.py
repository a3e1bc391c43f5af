"""Built-in workflow templates. Each is valid, draws no warning, and runs as it reads: every
reference in them is explicit (`{input.text}`, `{llm-1.text}`) or certain (a bare `{value}`
right after an input node that declares the field required)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    description: str
    category: str
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)


def _node(node_id: str, node_type: str, x: int, y: int, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, "position": {"x": x, "y": y}, "data": data}


def _edge(source: str, target: str, handle: str | None = None) -> dict[str, Any]:
    edge: dict[str, Any] = {"id": f"e-{source}-{target}", "source": source, "target": target}
    if handle is not None:
        edge["sourceHandle"] = handle
    return edge


def _chain(*node_ids: str) -> list[dict[str, Any]]:
    return [_edge(a, b) for a, b in itertools.pairwise(node_ids)]


_TEXT_INPUT = {"fields": [{"name": "text", "type": "string", "required": True}]}

TEMPLATES: tuple[Template, ...] = (
    Template(
        id="summarize-text",
        name="文本摘要",
        description="用 LLM 总结输入的文本。Summarize a text with an LLM.",
        category="llm",
        nodes=[
            _node("start-1", "start", 0, 0, label="开始"),
            _node("input-1", "input", 200, 0, label="输入文本", **_TEXT_INPUT),
            _node(
                "llm-1",
                "llm",
                400,
                0,
                label="总结",
                provider="deepseek",
                model="deepseek-chat",
                system_prompt="你是一个擅长提炼要点的助手。",
                prompt="请用三句话总结以下文本:\n{input.text}",
                temperature=0.3,
            ),
            _node("output-1", "output", 600, 0, label="输出", mapping={"summary": "{llm-1.text}"}),
            _node("end-1", "end", 800, 0, label="结束"),
        ],
        edges=_chain("start-1", "input-1", "llm-1", "output-1", "end-1"),
    ),
    Template(
        id="classify-and-branch",
        name="分类并分支处理",
        description="LLM 判断情绪,正面与负面走不同分支。Classify sentiment, then branch.",
        category="logic",
        nodes=[
            _node("start-1", "start", 0, 100, label="开始"),
            _node("input-1", "input", 200, 100, label="用户反馈", **_TEXT_INPUT),
            _node(
                "llm-classify",
                "llm",
                400,
                100,
                label="情绪分类",
                provider="deepseek",
                model="deepseek-chat",
                prompt="判断以下反馈的情绪,只回答 positive 或 negative:\n{input.text}",
                temperature=0,
            ),
            _node(
                "condition-1",
                "condition",
                600,
                100,
                label="是否正面",
                expression="contains(lower({llm-classify.text}), 'positive')",
            ),
            _node(
                "llm-thanks",
                "llm",
                800,
                0,
                label="致谢回复",
                provider="deepseek",
                model="deepseek-chat",
                prompt="为这条正面反馈写一句简短的感谢:\n{input.text}",
            ),
            _node(
                "llm-apology",
                "llm",
                800,
                200,
                label="安抚回复",
                provider="deepseek",
                model="deepseek-chat",
                prompt="为这条负面反馈写一段诚恳的致歉与解决方案:\n{input.text}",
            ),
            _node("end-1", "end", 1000, 100, label="结束"),
        ],
        edges=[
            *_chain("start-1", "input-1", "llm-classify", "condition-1"),
            _edge("condition-1", "llm-thanks", "true"),
            _edge("condition-1", "llm-apology", "false"),
            _edge("llm-thanks", "end-1"),
            _edge("llm-apology", "end-1"),
        ],
    ),
    Template(
        id="number-threshold",
        name="数值判断",
        description="按输入的数值是否大于 10 走不同分支(种子文档的条件示例)。"
        "Branch on whether the input value is over 10 (the seed's condition example).",
        category="logic",
        nodes=[
            _node("start-1", "start", 0, 100, label="开始"),
            _node(
                "input-1",
                "input",
                200,
                100,
                label="数值",
                fields=[{"name": "value", "type": "number", "required": True}],
            ),
            # `{value}` reads the field value of what flows in: the input node declares it
            # required, so it is always there and the reference means exactly that field.
            _node(
                "condition-1", "condition", 400, 100, label="大于 10?", expression="{value} > 10"
            ),
            _node(
                "output-over",
                "output",
                600,
                0,
                label="大于 10",
                mapping={"over_10": True, "value": "{input.value}"},
            ),
            _node(
                "output-not-over",
                "output",
                600,
                200,
                label="不大于 10",
                mapping={"over_10": False, "value": "{input.value}"},
            ),
            _node("end-1", "end", 800, 100, label="结束"),
        ],
        edges=[
            *_chain("start-1", "input-1", "condition-1"),
            _edge("condition-1", "output-over", "true"),
            _edge("condition-1", "output-not-over", "false"),
            _edge("output-over", "end-1"),
            _edge("output-not-over", "end-1"),
        ],
    ),
    Template(
        id="loop-llm-per-item",
        name="逐条处理列表",
        description="对列表中的每一项调用一次 LLM。Run an LLM once per item of a list.",
        category="loop",
        nodes=[
            _node("start-1", "start", 0, 0, label="开始"),
            _node(
                "input-1",
                "input",
                200,
                0,
                label="列表",
                fields=[{"name": "items", "type": "array", "required": True}],
            ),
            _node(
                "loop-1",
                "loop",
                400,
                0,
                label="遍历",
                items_path="{input.items}",
                item_variable="item",
                error_handling="continue",
            ),
            {
                **_node(
                    "llm-item",
                    "llm",
                    50,
                    50,
                    label="处理一项",
                    provider="deepseek",
                    model="deepseek-chat",
                    prompt="用一句话解释:{item}",
                ),
                "parentId": "loop-1",
            },
            _node("output-1", "output", 700, 0, label="输出", mapping={"results": "{loop-1}"}),
            _node("end-1", "end", 900, 0, label="结束"),
        ],
        edges=_chain("start-1", "input-1", "loop-1", "output-1", "end-1"),
    ),
    Template(
        id="agent-with-tools",
        name="带工具的智能体",
        description="能发 HTTP 请求和做计算的 Agent。An agent that can call HTTP and compute.",
        category="agent",
        nodes=[
            _node("start-1", "start", 0, 0, label="开始"),
            _node(
                "input-1",
                "input",
                200,
                0,
                label="问题",
                fields=[{"name": "question", "type": "string", "required": True}],
            ),
            _node(
                "agent-1",
                "agent",
                400,
                0,
                label="智能体",
                provider="deepseek",
                model="deepseek-chat",
                system_prompt="你可以使用工具。需要计算时调用 calculator。",
                prompt="{input.question}",
                tools=[{"type": "calculator"}, {"type": "http_request"}],
                max_iterations=5,
            ),
            _node("output-1", "output", 600, 0, label="输出", mapping={"answer": "{agent-1.text}"}),
            _node("end-1", "end", 800, 0, label="结束"),
        ],
        edges=_chain("start-1", "input-1", "agent-1", "output-1", "end-1"),
    ),
    Template(
        id="data-source-report",
        name="数据查询与报告",
        description="智能体查询数据源,再由 LLM 写成报告。Query a data source, then report.",
        category="data",
        nodes=[
            _node("start-1", "start", 0, 0, label="开始"),
            _node(
                "input-1",
                "input",
                200,
                0,
                label="需求",
                fields=[
                    {"name": "question", "type": "string", "required": True},
                    {"name": "data_source_id", "type": "string", "required": True},
                ],
            ),
            _node(
                "agent-query",
                "agent",
                400,
                0,
                label="查询数据",
                provider="deepseek",
                model="deepseek-chat",
                system_prompt="用只读 SQL 查询数据源来回答问题,返回查询到的关键数据。",
                prompt="数据源 {input.data_source_id}:{input.question}",
                tools=[{"type": "data_source_query"}],
                max_iterations=6,
            ),
            _node(
                "llm-report",
                "llm",
                600,
                0,
                label="撰写报告",
                provider="deepseek",
                model="deepseek-chat",
                prompt="根据以下数据写一份简短的报告,回答“{input.question}”:\n{agent-query.text}",
            ),
            _node(
                "output-1", "output", 800, 0, label="输出", mapping={"report": "{llm-report.text}"}
            ),
            _node("end-1", "end", 1000, 0, label="结束"),
        ],
        edges=_chain("start-1", "input-1", "agent-query", "llm-report", "output-1", "end-1"),
    ),
    Template(
        id="translate",
        name="翻译",
        description="把文本翻译成指定语言。Translate a text into a chosen language.",
        category="llm",
        nodes=[
            _node("start-1", "start", 0, 0, label="开始"),
            _node(
                "input-1",
                "input",
                200,
                0,
                label="原文",
                fields=[
                    {"name": "text", "type": "string", "required": True},
                    {
                        "name": "target_language",
                        "type": "string",
                        "required": False,
                        "default": "English",
                    },
                ],
            ),
            _node(
                "llm-1",
                "llm",
                400,
                0,
                label="翻译",
                provider="deepseek",
                model="deepseek-chat",
                system_prompt="你是专业译者,只输出译文。",
                prompt="把下面的文本翻译成 {input.target_language}:\n{input.text}",
                temperature=0.2,
            ),
            _node(
                "output-1", "output", 600, 0, label="输出", mapping={"translation": "{llm-1.text}"}
            ),
            _node("end-1", "end", 800, 0, label="结束"),
        ],
        edges=_chain("start-1", "input-1", "llm-1", "output-1", "end-1"),
    ),
)


def find_template(template_id: str) -> Template | None:
    return next((t for t in TEMPLATES if t.id == template_id), None)
