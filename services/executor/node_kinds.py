"""Every node type in one table: its config model, the runner that serves it, whether the
orchestrator runs it in its decision pass, and its default timeout. What the executor does
differently per node type is read from here.

- A *control* runner is a pure function of the node's config and context that takes
  microseconds (services/executor/control_nodes.py): the orchestrator runs it inside its
  decision pass (services/executor/inline.py, ADR 0007), or a worker does when
  `inline_control_nodes` is off.
- A *worker* runner needs the outside world, a model or a data source
  (services/executor/worker/runners/): only a worker runs it, under the node's timeout.
- transform has both: its `data_source` mode (`worker_modes`) queries a data source.
- loop has neither: the decisions themselves run it as iterations (progression.py).

Each config model is the one workflows are validated with (shared/workflow/nodes.py); its
`timeout` default is the node type's default timeout per attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from services.executor import control_nodes
from services.executor.messages import NOT_SUPPORTED_YET
from services.executor.node_run import BAD_CONFIG, NodeResult, NodeRunError
from services.executor.worker.runners.agent import agent_node
from services.executor.worker.runners.context import WorkerRunner
from services.executor.worker.runners.data_source import data_source_node
from services.executor.worker.runners.llm import llm_node
from shared.i18n import Message
from shared.workflow.nodes import (
    AgentData,
    ConditionData,
    EndData,
    InputData,
    LLMData,
    LoopData,
    NodeData,
    OutputData,
    StartData,
    TransformData,
)
from shared.workflow.references import RuntimeContext

ControlRunner = Callable[[BaseModel, RuntimeContext], NodeResult]

_NOT_CONTROL = Message("节点类型 {type} 不由内置执行器运行", "node type {type} is not built in")


@dataclass(frozen=True)
class NodeKind:
    node_type: str
    config: type[NodeData]
    control: ControlRunner | None = None
    worker: WorkerRunner | None = None
    worker_modes: tuple[str, ...] = ()  # modes (`data["mode"]`) only the worker runner serves

    @property
    def default_timeout(self) -> float:
        """Seconds per attempt when the node sets none."""
        return float(self.config.model_fields["timeout"].default)

    def control_runner(self, data: Mapping[str, Any]) -> ControlRunner | None:
        """The control runner that serves a node with this `data`, if one does."""
        return None if data.get("mode") in self.worker_modes else self.control

    def runs_inline(self, data: Mapping[str, Any]) -> bool:
        """Whether the orchestrator may run a node with this `data` in its decision pass."""
        return self.control_runner(data) is not None

    def parse(self, data: Mapping[str, Any]) -> NodeData:
        """The node's typed config; pydantic's ValidationError if `data` does not fit."""
        return self.config.model_validate(data)


NODE_KINDS: Final[Mapping[str, NodeKind]] = MappingProxyType(
    {
        kind.node_type: kind
        for kind in (
            NodeKind("start", StartData, control=control_nodes.start),
            NodeKind("input", InputData, control=control_nodes.input_node),
            NodeKind("condition", ConditionData, control=control_nodes.condition),
            NodeKind(
                "transform",
                TransformData,
                control=control_nodes.transform,
                worker=data_source_node,
                worker_modes=("data_source",),
            ),
            NodeKind("output", OutputData, control=control_nodes.output),
            NodeKind("end", EndData, control=control_nodes.end),
            NodeKind("llm", LLMData, worker=llm_node),
            NodeKind("agent", AgentData, worker=agent_node),
            NodeKind("loop", LoopData),  # no runner: progression.py runs its iterations
        )
    }
)


def configured(node_type: str, data: Mapping[str, Any]) -> tuple[NodeKind, NodeData]:
    """A node's kind and its config, parsed once; NodeRunError when no runner serves the
    type or the config does not fit (validated before the run, so an edit made since)."""
    kind = NODE_KINDS.get(node_type)
    if kind is None:
        raise NodeRunError(NOT_SUPPORTED_YET, type=node_type)
    return kind, _parsed(kind, data)


def run_control(node_type: str, data: Mapping[str, Any], context: RuntimeContext) -> NodeResult:
    """One attempt of a control node, on this thread; NodeRunError for a node it cannot run
    (a model or data source node goes to a worker)."""
    kind = NODE_KINDS.get(node_type)
    if kind is None or kind.control is None:
        raise NodeRunError(_NOT_CONTROL, type=node_type)
    config = _parsed(kind, data)
    runner = kind.control_runner(data)
    if runner is None:
        raise NodeRunError(_NOT_CONTROL, type=f"{node_type}/{data.get('mode')}")
    return runner(config, context)


def _parsed(kind: NodeKind, data: Mapping[str, Any]) -> NodeData:
    try:
        return kind.parse(data)
    except PydanticValidationError as exc:
        raise NodeRunError(BAD_CONFIG, detail=str(exc.errors()[0]["msg"])) from exc
