"""The orchestrator (inside the executor api process): decides what runs next, dispatches
node-run commands to workers over `NODE_RUNS`, and records their results from `NODE_RESULTS`.

Every decision is first stored in the `Execution` aggregate, then acted on: a node is marked
started before its command is published, and a result is applied once however often it comes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from uuid import UUID

from nats.aio.msg import Msg

from services.executor import messages
from services.executor.application import ExecutorApplication
from services.executor.domain import FINAL_STATUSES, Execution
from services.executor.messages import NodeRunCommand, NodeRunResult
from services.executor.planner import NodeState, Outcome, plan
from services.executor.runners.builtin import final_output_data
from shared.bus.client import BusUnavailable, JetStreamBus, OutgoingMessage
from shared.bus.consumer import PullConsumer
from shared.bus.streams import NODE_RESULTS_STREAM, NODE_RUN_SUBJECT
from shared.workflow.graph import GraphIndex
from shared.workflow.model import HANDLE_ERROR, WorkflowGraph
from shared.workflow.nodes import NodeData, parse_node_data

log = logging.getLogger("agentflow.orchestrator")

ORCHESTRATOR_DURABLE = "orchestrator"
_STATE = {
    "completed": NodeState.COMPLETED,
    "failed": NodeState.FAILED,
    "skipped": NodeState.SKIPPED,
    "running": NodeState.RUNNING,
    "retrying": NodeState.RUNNING,
}


def outcomes_of(execution: Execution) -> dict[str, Outcome]:
    return {
        run_key: Outcome(_STATE[node["status"]], node.get("branch"))
        for run_key, node in execution.nodes.items()
    }


def policy_of(node_type: str, data: dict[str, Any]) -> NodeData:
    try:
        config = parse_node_data(node_type, data)
    except Exception:  # validated before the run; defaults keep a bad edit from wedging it
        return NodeData()
    assert isinstance(config, NodeData)
    return config


class Orchestrator:
    def __init__(self, application: ExecutorApplication, bus: JetStreamBus) -> None:
        self._app = application
        self._bus = bus
        self._indexes: dict[UUID, GraphIndex] = {}
        self._locks: dict[UUID, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.results = PullConsumer(
            bus,
            stream=NODE_RESULTS_STREAM,
            durable=ORCHESTRATOR_DURABLE,
            subject="evt.node.>",
            handler=self.on_result,
        )

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.results.start()

    async def stop(self) -> None:
        await self.results.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def kick(self, execution_id: UUID, delay_s: float = 0.0, *, recover: bool = False) -> None:
        """Advance an execution soon, in the background."""
        task = asyncio.create_task(self._advance_later(execution_id, delay_s, recover))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def kick_from_thread(self, execution_id: UUID) -> None:
        """`kick` from a sync route (FastAPI's threadpool): re-send what is in flight."""
        assert self._loop is not None, "start() binds the event loop"
        self._loop.call_soon_threadsafe(lambda: self.kick(execution_id, recover=True))

    async def recover(self, execution_ids: list[UUID]) -> None:
        """After a restart: carry on every execution that was still going."""
        if execution_ids:
            log.info("carrying on %d unfinished executions", len(execution_ids))
        for execution_id in execution_ids:
            self.kick(execution_id, recover=True)

    async def _advance_later(self, execution_id: UUID, delay_s: float, recover: bool) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        for backoff in (0.2, 0.5, 1, 2, 5, 5, 5, 5):
            try:
                await self.advance(execution_id, recover=recover)
                return
            except BusUnavailable:
                await asyncio.sleep(backoff)  # the decision is stored; publishing waits for NATS
            except Exception:
                log.exception("advancing execution %s failed", execution_id)
                return

    # -- deciding ----------------------------------------------------------------------------

    async def advance(self, execution_id: UUID, *, recover: bool = False) -> None:
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            commands = await asyncio.to_thread(self._decide, execution_id, recover)
            await self._dispatch(commands)
        if not commands and self._finished(execution_id):
            self._locks.pop(execution_id, None)
            self._indexes.pop(execution_id, None)

    async def _dispatch(self, commands: list[NodeRunCommand]) -> None:
        if commands:
            await self._bus.publish_batch(
                [OutgoingMessage(NODE_RUN_SUBJECT, c.model_dump_json().encode(), c.msg_id)
                 for c in commands]
            )  # fmt: skip

    def _finished(self, execution_id: UUID) -> bool:
        return self._app.get(execution_id).status in FINAL_STATUSES

    def _index(self, execution: Execution) -> GraphIndex:
        index = self._indexes.get(execution.id)
        if index is None:
            index = GraphIndex(WorkflowGraph.model_validate(execution.graph))
            self._indexes[execution.id] = index
        return index

    def _decide(self, execution_id: UUID, recover: bool = False) -> list[NodeRunCommand]:
        dispatch: list[NodeRunCommand] = []

        def step(execution: Execution) -> bool:
            dispatch.clear()
            if execution.status in FINAL_STATUSES:
                return False
            index = self._index(execution)
            changed = False
            if recover:
                changed |= self._redispatch(execution, index, dispatch)
            while True:
                step_plan = plan(index, outcomes_of(execution))
                for node_id in step_plan.skip:
                    node_type = index.nodes_by_id[node_id].type
                    changed |= execution.record_node_skipped(
                        node_id, node_id, node_type, "not on the path taken"
                    )
                for node_id in step_plan.ready:
                    node_type = index.nodes_by_id[node_id].type
                    upstream = self._ran_upstream(execution, index, node_id)
                    if execution.record_node_started(
                        node_id, node_id, node_type, 1, {"upstream": upstream}
                    ):
                        execution.record_log("info", "节点开始执行", node_id, node_type)
                        changed = True
                        dispatch.append(self._command(execution, index, node_id, 1))
                if step_plan.skip:
                    continue  # a skip may decide more nodes
                if step_plan.done and not step_plan.ready:
                    changed |= self._conclude(execution, index)
                return changed

        self._app.change(execution_id, step)
        return list(dispatch)

    def _redispatch(
        self, execution: Execution, index: GraphIndex, dispatch: list[NodeRunCommand]
    ) -> bool:
        """Send again what was in flight when the process stopped: a running node's command
        (lost if the crash came between saving and publishing; JetStream drops it if it was
        sent), and a retrying node's next attempt (its backoff timer died with the process)."""
        changed = False
        for run_key, node in list(execution.nodes.items()):
            if node["status"] == "running":
                dispatch.append(self._command(execution, index, run_key, node["attempt"]))
            elif node["status"] == "retrying":
                attempt = node["attempt"] + 1
                if execution.record_node_started(
                    run_key, node["node_id"], node["node_type"], attempt, node["inputs"] or {}
                ):
                    changed = True
                    dispatch.append(self._command(execution, index, run_key, attempt))
        return changed

    def _conclude(self, execution: Execution, index: GraphIndex) -> bool:
        failed = [key for key, node in execution.nodes.items() if node["status"] == "failed"]
        if failed:
            node = execution.nodes[failed[0]]
            message = messages.NODE_FAILED.render(
                "zh", node_id=node["node_id"], error=node["error"]
            )
            return execution.fail(message, node["node_id"])
        nodes = execution.nodes
        completed = [key for key, node in nodes.items() if node["status"] == "completed"]
        ends = [k for k in completed if nodes[k]["node_type"] == "end"]
        end_record = nodes[ends[0]]["output"] if ends else None
        outputs = [nodes[k]["output"] for k in completed if nodes[k]["node_type"] == "output"]
        before_end = None
        if ends:
            sources = [e.source for e in index.incoming[ends[0]]]
            ran = [s for s in sources if nodes.get(s, {}).get("status") == "completed"]
            before_end = nodes[ran[0]]["output"] if ran else None
        return execution.finish(final_output_data(end_record, outputs, before_end))

    @staticmethod
    def _ran_upstream(execution: Execution, index: GraphIndex, node_id: str) -> list[str]:
        return [
            e.source
            for e in index.incoming[node_id]
            if execution.nodes.get(e.source, {}).get("status") == "completed"
        ]

    def _command(
        self, execution: Execution, index: GraphIndex, node_id: str, attempt: int
    ) -> NodeRunCommand:
        node = index.nodes_by_id[node_id]
        visible = index.ancestors(node_id)
        records = {
            key: record["output"]
            for key, record in execution.nodes.items()
            if key in visible and record["status"] == "completed"
        }
        # `{input}` sees input_data with the input nodes' defaults filled in.
        input_data = dict(execution.input_data)
        for key, output in records.items():
            if index.nodes_by_id[key].type == "input" and isinstance(output, dict):
                input_data.update(output)
        return NodeRunCommand(
            execution_id=str(execution.id),
            run_key=node_id,
            node_id=node_id,
            node_type=node.type,
            attempt=attempt,
            data=node.data,
            input_data=input_data,
            node_types={n: index.nodes_by_id[n].type for n in index.nodes_by_id},
            records=records,
            upstream=self._ran_upstream(execution, index, node_id),
        )

    # -- results -----------------------------------------------------------------------------

    async def on_result(self, message: Msg) -> None:
        result = NodeRunResult.model_validate_json(message.data)
        execution_id = UUID(result.execution_id)
        retry_in = await asyncio.to_thread(self._apply_result, execution_id, result)
        if retry_in is not None:
            self.kick_retry(execution_id, result.run_key, result.attempt + 1, retry_in)
        else:
            await self.advance(execution_id)

    def _apply_result(self, execution_id: UUID, result: NodeRunResult) -> float | None:
        retry_in: list[float] = []

        def apply(execution: Execution) -> bool:
            retry_in.clear()
            node = execution.nodes.get(result.run_key)
            if node is None:
                return False
            node_id, node_type = node["node_id"], node["node_type"]
            if result.ok:
                if not execution.record_node_completed(
                    result.run_key, result.attempt, result.output, result.duration_ms, result.branch
                ):
                    return False
                for level, text in result.logs:
                    execution.record_log(_level(level), text, node_id, node_type)
                execution.record_log("info", "节点执行完成", node_id, node_type, result.duration_ms)
                return True
            policy = policy_of(node_type, self._index(execution).nodes_by_id[node_id].data)
            error = result.error or "failed"
            if result.retryable and result.attempt < policy.retry.max_attempts:
                if not execution.record_node_failed(
                    result.run_key, result.attempt, error, result.duration_ms, final=False
                ):
                    return False
                execution.record_log("warn", f"第 {result.attempt} 次尝试失败,将重试:{error}",
                                     node_id, node_type, result.duration_ms)  # fmt: skip
                retry_in.append(policy.retry.delay_before(result.attempt + 1))
                return True
            if policy.on_error == "continue":
                recorded = execution.record_node_completed(
                    result.run_key, result.attempt, policy.default_output, result.duration_ms
                )
            elif policy.on_error == "error_edge":
                recorded = execution.record_node_completed(
                    result.run_key,
                    result.attempt,
                    {"error": error},
                    result.duration_ms,
                    branch=HANDLE_ERROR,
                )
            else:
                recorded = execution.record_node_failed(
                    result.run_key, result.attempt, error, result.duration_ms, final=True
                )
            if recorded:
                execution.record_log("error", error, node_id, node_type, result.duration_ms)
            return recorded

        self._app.change(execution_id, apply)
        return retry_in[0] if retry_in else None

    def kick_retry(self, execution_id: UUID, run_key: str, attempt: int, delay_s: float) -> None:
        task = asyncio.create_task(self._retry(execution_id, run_key, attempt, delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retry(self, execution_id: UUID, run_key: str, attempt: int, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        lock = self._locks.setdefault(execution_id, asyncio.Lock())
        async with lock:
            command = await asyncio.to_thread(self._restart, execution_id, run_key, attempt)
            await self._dispatch([command] if command is not None else [])

    def _restart(self, execution_id: UUID, run_key: str, attempt: int) -> NodeRunCommand | None:
        commands: list[NodeRunCommand] = []

        def start_again(execution: Execution) -> bool:
            commands.clear()
            node = execution.nodes.get(run_key)
            if execution.status in FINAL_STATUSES or node is None:
                return False
            if not execution.record_node_started(
                run_key, node["node_id"], node["node_type"], attempt, node["inputs"] or {}
            ):
                return False
            commands.append(self._command(execution, self._index(execution), run_key, attempt))
            return True

        self._app.change(execution_id, start_again)
        return commands[0] if commands else None


def _level(level: str) -> Any:
    return level if level in ("debug", "info", "warn", "error") else "info"
