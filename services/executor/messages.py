"""What the executor says to people, in Chinese and English, and its command/result bodies."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from shared.i18n import Message
from shared.workflow.references import LoopFrame, RuntimeContext

if TYPE_CHECKING:
    from services.executor.node_run import NodeResult

EXECUTION_NOT_FOUND = Message("执行记录不存在", "Execution not found")
NOT_RESUMABLE = Message(
    "只有失败的执行可以恢复(当前状态 {status})",
    "Only a failed execution can be resumed (it is {status})",
)
EXECUTION_FINISHED = Message(
    "执行已结束(状态 {status}),不能取消",
    "The execution already ended ({status}); nothing to cancel",
)
WORKFLOW_NOT_FOUND = Message("工作流不存在", "Workflow not found")
WORKFLOW_INVALID = Message(
    "工作流校验未通过,不能执行:{summary}", "The workflow is not valid and cannot run: {summary}"
)
WORKFLOWS_DOWN = Message("工作流服务暂不可用", "The workflows service is unavailable")
RUN_TOO_LONG = Message(
    "执行超过最长运行时间({seconds} 秒),已终止",
    "The execution ran longer than the maximum run time ({seconds}s) and was stopped",
)
TOO_MANY_RUNNING = Message(
    "同时运行的执行已达上限({limit}),请等已有执行结束后再试",
    "You already have {limit} executions running; start more when some have finished",
)
RATE_LIMITED = Message(
    "每分钟最多启动 {limit} 次执行,请稍后再试",
    "At most {limit} executions may be started per minute; try again later",
)
TOKEN_BUDGET_SPENT = Message(
    "本次执行的模型 token 预算已用完(已用 {used},上限 {budget},AGENTFLOW_MAX_TOKENS_PER_EXECUTION)",
    "The run's model token budget is spent ({used} used of {budget}, "
    "AGENTFLOW_MAX_TOKENS_PER_EXECUTION)",
)
AGENT_OVER_BUDGET = Message(
    "智能体用完了本次执行剩余的 {budget} 个模型 token,仍未给出答案",
    "The agent spent the run's remaining {budget} model tokens without an answer",
)
NODE_FAILED = Message("节点 {node_id} 执行失败:{error}", "Node {node_id} failed: {error}")


def new_incident_id() -> str:
    """A short id that ties a user's "internal error" to the log line holding the cause."""
    return uuid.uuid4().hex[:12]


# Names an incident id the logs carry, never the exception: its class and text are ours.
NODE_INTERNAL_ERROR = Message(
    "执行节点时发生内部错误(编号 {incident},运维人员可在日志中按编号查到原因)",
    "internal error while running the node (incident {incident}: operators find the cause"
    " in the logs under this id)",
)
NOT_SUPPORTED_YET = Message(
    "节点类型 {type} 暂未在执行器中实现", "Node type {type} is not implemented by the executor yet"
)


class LoopFrameIn(BaseModel):
    """One enclosing loop's current iteration, as a node inside its body sees it."""

    loop_id: str
    item_variable: str
    item: Any
    index: int
    count: int


class NodeRunCommand(BaseModel):
    """`cmd.node.run`: everything a stateless worker needs to run one node attempt."""

    execution_id: str
    run_key: str
    node_id: str
    node_type: str
    attempt: int = Field(ge=1)
    data: dict[str, Any]
    input_data: dict[str, Any]
    node_types: dict[str, str]
    records: dict[str, Any]  # output records of the nodes upstream of this one
    upstream: list[str]
    loops: list[LoopFrameIn] = Field(default_factory=list)  # outermost first
    owner_id: str = ""  # whose data sources the node may query
    trace: dict[str, str] = Field(default_factory=dict)  # the execution's trace context
    language: str = "zh"
    # Model tokens the run may still spend (llm and agent nodes); None: no budget.
    token_budget: int | None = Field(default=None, ge=1)

    @property
    def msg_id(self) -> str:
        return f"{self.execution_id}:{self.run_key}:{self.attempt}"

    def context(self) -> RuntimeContext:
        """What the node's templates may read."""
        return RuntimeContext(
            input_data=self.input_data,
            node_types=self.node_types,
            records=self.records,
            upstream=tuple(self.upstream),
            loops=tuple(
                LoopFrame(f.loop_id, f.item_variable, f.item, f.index, f.count) for f in self.loops
            ),
        )


class NodeRunResult(BaseModel):
    """`evt.node.<execution_id>`: what one attempt produced."""

    execution_id: str
    run_key: str
    attempt: int
    ok: bool
    output: Any = None
    branch: str | None = None
    error: str | None = None
    retryable: bool = False
    duration_ms: int = 0
    logs: list[tuple[str, str]] = Field(default_factory=list)

    @property
    def msg_id(self) -> str:
        return f"{self.execution_id}:{self.run_key}:{self.attempt}:result"

    @classmethod
    def succeeded(
        cls, execution_id: str, run_key: str, attempt: int, result: NodeResult, duration_ms: int
    ) -> NodeRunResult:
        return cls(
            execution_id=execution_id,
            run_key=run_key,
            attempt=attempt,
            ok=True,
            output=result.output,
            branch=result.branch,
            duration_ms=duration_ms,
            logs=list(result.logs),
        )

    @classmethod
    def failed(
        cls,
        execution_id: str,
        run_key: str,
        attempt: int,
        error: str,
        duration_ms: int,
        *,
        retryable: bool = False,
        logs: Sequence[tuple[str, str]] = (),
    ) -> NodeRunResult:
        return cls(
            execution_id=execution_id,
            run_key=run_key,
            attempt=attempt,
            ok=False,
            error=error,
            retryable=retryable,
            duration_ms=duration_ms,
            logs=list(logs),
        )
