"""What happens next in one execution: the orchestrator's decisions, as steps on the
`Execution` aggregate and the workflow's `GraphIndex`, with no I/O.

A pass walks the top level and, inside every running loop, its running iterations (each a
scope of its own, keyed by the iteration path), so the work per result is bounded by the
loops' parallelism, not by how many items they have. Nodes inside loop bodies have run keys
with their iteration path: `summarise[3]`, or `inner[3][0]` in a nested loop.

Loops are run here, not by workers: starting one resolves its items, then its iterations are
started (up to `parallelism` at once), followed, and finished as `IterationStarted` and
`IterationFinished` events; when the last one finishes the loop completes (or fails, and its
`on_error` applies, like any node's).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from services.executor import messages
from services.executor.control_nodes import final_output_data
from services.executor.domain import FINAL_STATUSES, MODEL_NODE_TYPES, Execution
from services.executor.inline import InlineRun, run_inline, runs_inline
from services.executor.messages import LoopFrameIn, NodeRunCommand, NodeRunResult
from services.executor.node_kinds import NODE_KINDS
from services.executor.planner import NodeState, Outcome, plan
from shared.i18n import Language, Message
from shared.workflow.graph import GraphIndex
from shared.workflow.model import HANDLE_ERROR
from shared.workflow.nodes import LoopData, NodeData
from shared.workflow.outputs import primary_output
from shared.workflow.references import LoopFrame, RuntimeContext
from shared.workflow.templates import TemplateError, render, render_value
from shared.workflow.value_words import kind_word

_STATE = {
    "completed": NodeState.COMPLETED,
    "failed": NodeState.FAILED,
    "skipped": NodeState.SKIPPED,
    "running": NodeState.RUNNING,
    "retrying": NodeState.RUNNING,
}
_PATH = re.compile(r"\[(\d+)\]")
Path = tuple[int, ...]
# A node command travels through NATS, whose messages are at most 1 MiB by default (headers
# included); a command is the node's inputs, so large input_data or upstream outputs.
MAX_COMMAND_BYTES = 1_000_000
_COMMAND_TOO_LARGE = Message(
    "节点的输入过大,无法交给工作进程:{size} 字节(最多 {limit})",
    "the node's inputs are too large to hand to a worker: {size} bytes (at most {limit})",
)

_TOO_MANY_NODE_RUNS = Message(
    "本次执行的节点运行次数达到上限 {limit}(循环的每一项、其中每个节点各算一次,"
    "AGENTFLOW_MAX_NODE_RUNS_PER_EXECUTION),执行已终止;请减少循环项数或拆分工作流",
    "The run reached its limit of {limit} node runs (each loop item, and each node in it, "
    "counts once; AGENTFLOW_MAX_NODE_RUNS_PER_EXECUTION) and was stopped; loop over fewer "
    "items or split the workflow",
)


def run_key(node_id: str, path: Path) -> str:
    return node_id + "".join(f"[{i}]" for i in path)


def path_of(record: dict[str, Any], key: str) -> Path:
    """The iteration path of a run key (its suffix after the node id)."""
    return tuple(int(i) for i in _PATH.findall(key[len(record["node_id"]) :]))


def policy_of(node_type: str, data: dict[str, Any]) -> NodeData:
    try:
        return NODE_KINDS[node_type].parse(data)
    except Exception:  # validated before the run; defaults keep a bad edit from wedging it
        return NodeData()


def settle_failure(
    execution: Execution,
    key: str,
    attempt: int,
    error: str,
    duration_ms: int,
    *,
    retryable: bool,
    policy: NodeData,
) -> tuple[bool, float | None]:
    """Record a failed attempt by the node's policy: another attempt after the backoff (the
    delay is returned), else `on_error`: fail, carry on with `default_output`, or follow the
    `error` edges. Returns (recorded, retry delay)."""
    node = execution.nodes[key]
    node_id, node_type = node["node_id"], node["node_type"]
    if retryable and attempt < policy.retry.max_attempts:
        if not execution.record_node_failed(key, attempt, error, duration_ms, final=False):
            return False, None
        execution.record_log(
            "warn", f"第 {attempt} 次尝试失败,将重试:{error}", node_id, node_type, duration_ms
        )
        return True, policy.retry.delay_before(attempt + 1)
    if policy.on_error == "continue":
        recorded = execution.record_node_completed(key, attempt, policy.default_output, duration_ms)
    elif policy.on_error == "error_edge":
        failure = {"message": error, "type": node_type, "attempts": attempt}
        recorded = execution.record_node_completed(
            key, attempt, {"error": failure}, duration_ms, branch=HANDLE_ERROR
        )
    else:
        recorded = execution.record_node_failed(key, attempt, error, duration_ms, final=True)
    if recorded:
        execution.record_log("error", error, node_id, node_type, duration_ms)
    return recorded, None


def apply_result(
    execution: Execution, index: GraphIndex, result: NodeRunResult
) -> tuple[bool, float | None]:
    """Record what a worker reported, once; returns (recorded, delay before the next attempt
    when the failure will be retried)."""
    node = execution.nodes.get(result.run_key)
    if node is None:
        return False, None
    node_id, node_type = node["node_id"], node["node_type"]
    if result.ok:
        if not execution.record_node_completed(
            result.run_key,
            result.attempt,
            result.output,
            result.duration_ms,
            result.branch,
            log_line=True,
        ):
            return False, None
        _record_logs(execution, result, node_id, node_type)
        return True, None
    recorded, delay = settle_failure(
        execution,
        result.run_key,
        result.attempt,
        result.error or "failed",
        result.duration_ms,
        retryable=result.retryable,
        policy=policy_of(node_type, index.nodes_by_id[node_id].data),
    )
    if recorded:
        _record_logs(execution, result, node_id, node_type)
    return recorded, delay


def _record_logs(execution: Execution, result: NodeRunResult, node_id: str, node_type: str) -> None:
    for level, text in result.logs:
        known = level in ("debug", "info", "warn", "error")
        execution.record_log(level if known else "info", text, node_id, node_type)  # type: ignore[arg-type]


@dataclass
class Progression:
    """One pass of decisions over an execution; `commands` are what to send to workers.

    With `inline`, control nodes are run within the pass (services/executor/inline.py) and
    their results applied at once; `ran_inline` lists those runs, and `retries` the attempts
    to start again after a backoff (run key, attempt, delay in seconds)."""

    execution: Execution
    index: GraphIndex
    language: Language = "zh"
    inline: bool = False
    max_loop_items: int | None = None  # the platform's cap over every loop's max_iterations
    token_budget: int | None = None  # model tokens one run may spend (None: no budget)
    # Node runs one execution may make, loops' iterations included (None: no cap).
    max_node_runs: int | None = None
    commands: list[NodeRunCommand] = field(default_factory=list)
    retries: list[tuple[str, int, float]] = field(default_factory=list)
    ran_inline: list[InlineRun] = field(default_factory=list)
    changed: bool = False

    def run(self, *, recover: bool = False) -> None:
        if self.execution.status in FINAL_STATUSES:
            return
        if recover:
            self._redispatch()
        if self._advance_scope(None, ()):
            self.changed |= self._conclude()
        if self.execution.status in FINAL_STATUSES:
            # Failed in this pass (the node-run cap): what it queued need not run. A resume
            # sends the started ones again.
            self.commands.clear()

    # -- scopes ------------------------------------------------------------------------------

    def _outcomes(self, scope: str | None, path: Path) -> dict[str, Outcome]:
        nodes = self.execution.nodes
        outcomes: dict[str, Outcome] = {}
        for node_id in self.index.scope_nodes(scope):
            record = nodes.get(run_key(node_id, path))
            if record is not None:
                outcomes[node_id] = Outcome(_STATE[record["status"]], record.get("branch"))
        return outcomes

    def _advance_scope(self, scope: str | None, path: Path) -> bool:
        """Start, skip and follow what can move in one scope; True when it has finished."""
        while True:
            if self.execution.status in FINAL_STATUSES:
                return False  # failed in this pass: nothing more starts
            step = plan(self.index, self._outcomes(scope, path), scope)
            for node_id in step.skip:
                node_type = self.index.nodes_by_id[node_id].type
                if self._run_cap_reached(node_id):
                    return False
                self.changed |= self.execution.record_node_skipped(
                    run_key(node_id, path), node_id, node_type, "not on the path taken"
                )
            moved = bool(step.skip)
            for node_id in step.ready:
                if self._run_cap_reached(node_id):
                    return False
                moved |= self._start_node(node_id, path)
            for node_id in self.index.scope_nodes(scope):
                record = self.execution.nodes.get(run_key(node_id, path))
                if record and record["node_type"] == "loop" and record["status"] == "running":
                    moved |= self._advance_loop(node_id, path)
            if not moved:
                return step.done and not step.ready

    def _start_node(self, node_id: str, path: Path) -> bool:
        """Record a node as started and queue its command; a loop starts its iterations.
        True when the node already finished (a loop with nothing to do, a control node run here)."""
        execution, key = self.execution, run_key(node_id, path)
        node = self.index.nodes_by_id[node_id]
        inputs: dict[str, Any] = {"upstream": self._ran_upstream(node_id, path)}
        if node.type != "loop":
            context = self.context(node_id, path)
            inputs.update(self._inputs_seen(node.type, node.data, context))
            if execution.record_node_started(key, node_id, node.type, 1, inputs):
                self.changed = True
                return self._send(key, 1, context)
            return False
        config = policy_of("loop", node.data)
        items, problem = self._loop_items(node_id, path, config)
        if items is not None:
            inputs["items"] = items
        if not execution.record_node_started(key, node_id, "loop", 1, inputs):
            return False
        self.changed = True
        execution.record_log("info", f"循环开始,共 {len(items or [])} 项", node_id, "loop")
        if problem is not None:
            settle_failure(execution, key, 1, problem, 0, retryable=False, policy=config)
            return True
        return self._advance_loop(node_id, path)

    def _send(self, key: str, attempt: int, context: RuntimeContext | None = None) -> bool:
        """Queue a started attempt for a worker, or run it here when it is a control node
        and the pass runs those; True when it ran here (its result is recorded)."""
        record = self.execution.nodes[key]
        node = self.index.nodes_by_id[record["node_id"]]
        if node.type in MODEL_NODE_TYPES and self.token_budget is not None:
            return self._send_within_budget(key, attempt, context)
        if not (self.inline and runs_inline(node.type, node.data)):
            return self._queue(self.command(key, attempt, context))
        if context is None:
            context = self.context(node.id, path_of(record, key))
        started_ns = time.time_ns()
        result, outcome = run_inline(
            str(self.execution.id), key, attempt, node.type, node.data, context, self.language
        )
        self.ran_inline.append(
            InlineRun(node.id, node.type, key, attempt, outcome, started_ns, time.time_ns())
        )
        _, delay = apply_result(self.execution, self.index, result)
        if delay is not None:
            self.retries.append((key, attempt + 1, delay))
        return True

    def _queue(self, command: NodeRunCommand) -> bool:
        """Queue a command for the workers. One that NATS would refuse as too large (its
        inputs: input_data and upstream outputs) fails its node here, by its `on_error`;
        sent, it would be refused again on every try and the run would never end."""
        size = len(command.model_dump_json())
        if size <= MAX_COMMAND_BYTES:
            self.commands.append(command)
            return False
        error = _COMMAND_TOO_LARGE.render(self.language, size=size, limit=MAX_COMMAND_BYTES)
        return self._fail_here(command.run_key, command.attempt, error)

    def _send_within_budget(self, key: str, attempt: int, context: RuntimeContext | None) -> bool:
        """A model node goes out with what is left of the run's token budget (the worker
        keeps its calls within it); with nothing left it fails here, by its `on_error`."""
        assert self.token_budget is not None
        used = self.execution.tokens_used
        if used < self.token_budget:
            command = self.command(key, attempt, context)
            return self._queue(
                command.model_copy(update={"token_budget": self.token_budget - used})
            )
        error = messages.TOKEN_BUDGET_SPENT.render(
            self.language, used=used, budget=self.token_budget
        )
        return self._fail_here(key, attempt, error)

    def _run_cap_reached(self, node_id: str) -> bool:
        """Whether one more node run (a node started or skipped, or a loop iteration) would
        pass the run's cap; if so the whole execution fails here, whatever the nodes'
        `on_error`: the cap bounds the run, not one node. Checked before each one, so loops
        nested in loops stop at the cap however many items each has."""
        cap = self.max_node_runs
        if cap is None or self.execution.node_runs < cap:
            return False
        if self.execution.status not in FINAL_STATUSES:
            node_type = self.index.nodes_by_id[node_id].type
            message = _TOO_MANY_NODE_RUNS.render(self.language, limit=cap)
            self.execution.fail(message, node_id)
            self.execution.record_log("error", message, node_id, node_type)
            self.changed = True
        return True

    def _fail_here(self, key: str, attempt: int, error: str) -> bool:
        """A started attempt that cannot go out fails here, for good, by the node's
        `on_error`; True: its outcome is recorded."""
        record = self.execution.nodes[key]
        policy = policy_of(record["node_type"], self.index.nodes_by_id[record["node_id"]].data)
        settle_failure(self.execution, key, attempt, error, 0, retryable=False, policy=policy)
        return True

    def _ran_upstream(self, node_id: str, path: Path) -> list[str]:
        nodes = self.execution.nodes
        return [
            e.source
            for e in self.index.incoming[node_id]
            if nodes.get(run_key(e.source, path), {}).get("status") == "completed"
        ]

    # -- loops -------------------------------------------------------------------------------

    def _loop_items(
        self, node_id: str, path: Path, config: NodeData
    ) -> tuple[list[Any] | None, str | None]:
        assert isinstance(config, LoopData)
        context = self.context(node_id, path)
        try:
            items = render_value(config.items_template, context.resolve)
        except TemplateError as exc:
            return None, f"items_path: {exc.render('en')}"
        if not isinstance(items, list):
            kind = kind_word(items, "en")  # "object", "text": not Python's "dict", "str"
            return None, f"items_path {config.items_path} is not a list (it is {kind})"
        if len(items) > config.max_iterations:
            return None, (
                f"{len(items)} items exceed max_iterations {config.max_iterations}; "
                "raise max_iterations or split the list"
            )
        if self.max_loop_items is not None and len(items) > self.max_loop_items:
            return None, (
                f"{len(items)} items exceed the platform's limit of {self.max_loop_items} "
                "items per loop (AGENTFLOW_MAX_LOOP_ITEMS); split the list"
            )
        return items, None

    def _advance_loop(self, loop_id: str, path: Path) -> bool:
        """Follow the running iterations, start more up to `parallelism`, and finish the loop
        after its last iteration. True when the loop finished."""
        execution, key = self.execution, run_key(loop_id, path)
        record = execution.nodes[key]
        config = policy_of("loop", self.index.nodes_by_id[loop_id].data)
        assert isinstance(config, LoopData)
        state = record["loop"]
        for index in list(state["running"]):
            self._follow_iteration(loop_id, path, index, config)
        stopping = config.error_handling == "stop" and state["errors"]
        while (
            not stopping
            and len(state["running"]) < config.parallelism
            and state["next"] < state["count"]
        ):
            if self._run_cap_reached(loop_id):
                return False
            index = state["next"]
            execution.record_iteration_started(key, index)
            self.changed = True
            self._follow_iteration(loop_id, path, index, config)
            stopping = config.error_handling == "stop" and state["errors"]
        if state["running"] or (state["next"] < state["count"] and not stopping):
            return False
        return self._finish_loop(loop_id, path, config)

    def _follow_iteration(self, loop_id: str, path: Path, index: int, config: LoopData) -> None:
        ipath = (*path, index)
        if not self._advance_scope(loop_id, ipath):
            return
        key = run_key(loop_id, path)
        failed = [
            run_key(n, ipath)
            for n in self.index.scope_nodes(loop_id)
            if self.execution.nodes.get(run_key(n, ipath), {}).get("status") == "failed"
        ]
        if failed:
            error = f"{failed[0]}: {self.execution.nodes[failed[0]]['error']}"
            self.execution.record_iteration_finished(key, index, False, None, error)
        else:
            try:
                result = self._iteration_result(loop_id, ipath, config)
            except TemplateError as exc:  # the loop's `output` beyond its bounds
                self.execution.record_iteration_finished(key, index, False, None, exc.render("en"))
            else:
                self.execution.record_iteration_finished(key, index, True, result, None)
        self.changed = True

    def _iteration_result(self, loop_id: str, ipath: Path, config: LoopData) -> Any:
        nodes = self.execution.nodes
        body = self.index.scope_nodes(loop_id)
        exits = [
            n
            for n in self.index.exit_nodes(loop_id)
            if nodes.get(run_key(n, ipath), {}).get("status") == "completed"
        ]
        if config.output is not None:
            context = self.context(loop_id, ipath[:-1], inner=ipath, upstream=exits)
            return render_value(config.output, context.resolve)
        if not body:
            return self._frames(loop_id, ipath[:-1], ipath)[-1].item
        values = {}
        for n in exits:
            record = nodes[run_key(n, ipath)]
            values[n] = primary_output(record["node_type"], record["output"])
        if len(values) == 1:
            return next(iter(values.values()))
        return values or None

    def _finish_loop(self, loop_id: str, path: Path, config: LoopData) -> bool:
        execution, key = self.execution, run_key(loop_id, path)
        state = execution.nodes[key]["loop"]
        attempt = execution.nodes[key]["attempt"]
        errors = [{"index": i, "message": state["errors"][i]} for i in sorted(state["errors"])]
        if errors and config.error_handling == "stop":
            first = errors[0]
            problem = f"iteration {first['index']} failed: {first['message']}"
            settle_failure(execution, key, attempt, problem, 0, retryable=False, policy=config)
            return True
        results: list[Any] = []
        for i in range(state["count"]):
            if i in state["results"]:
                results.append(state["results"][i])
            elif config.error_handling == "collect" and i in state["errors"]:
                results.append({"error": {"message": state["errors"][i], "index": i}})
        output = {"results": results, "errors": errors, "count": state["count"]}
        execution.record_node_completed(key, attempt, output, 0)
        execution.record_log(
            "warn" if errors else "info",
            f"循环结束:{len(state['results'])} 项成功,{len(errors)} 项失败",
            loop_id,
            "loop",
        )
        return True

    # -- what a node sees --------------------------------------------------------------------

    def _frames(self, node_id: str, path: Path, inner: Path | None = None) -> list[LoopFrame]:
        """The enclosing loops' current iterations; `inner` adds the node's own iteration
        (for a loop's `output`, rendered inside the iteration)."""
        loops = self.index.enclosing_loops(node_id)
        full = inner if inner is not None else path
        if inner is not None:
            loops = [*loops, node_id]
        frames: list[LoopFrame] = []
        for depth, loop_id in enumerate(loops):
            record = self.execution.nodes[run_key(loop_id, full[:depth])]
            items = record["inputs"]["items"]
            config = policy_of("loop", self.index.nodes_by_id[loop_id].data)
            variable = config.item_variable if isinstance(config, LoopData) else "item"
            position = full[depth]
            frames.append(LoopFrame(loop_id, variable, items[position], position, len(items)))
        return frames

    def _records(self, node_id: str, path: Path, inner: Path | None = None) -> dict[str, Any]:
        """Outputs of the completed nodes `node_id` may read, keyed by node id."""
        nodes, index = self.execution.nodes, self.index
        visible = set(index.ancestors(node_id))
        if inner is not None:
            visible |= set(index.scope_nodes(node_id))
        full = inner if inner is not None else path
        records: dict[str, Any] = {}
        for other in visible:
            depth = len(index.enclosing_loops(other))
            record = nodes.get(run_key(other, full[:depth]))
            if record is not None and record["status"] == "completed":
                records[other] = record["output"]
        return records

    def context(
        self,
        node_id: str,
        path: Path,
        *,
        inner: Path | None = None,
        upstream: list[str] | None = None,
    ) -> RuntimeContext:
        records = self._records(node_id, path, inner)
        return RuntimeContext(
            input_data=self._input_data(records),
            node_types={n: node.type for n, node in self.index.nodes_by_id.items()},
            records=records,
            upstream=tuple(upstream if upstream is not None else self._ran_upstream(node_id, path)),
            loops=tuple(self._frames(node_id, path, inner)),
        )

    def _input_data(self, records: dict[str, Any]) -> dict[str, Any]:
        # `{input}` sees input_data with the input nodes' defaults filled in.
        input_data = dict(self.execution.input_data)
        for key, output in records.items():
            if self.index.nodes_by_id[key].type == "input" and isinstance(output, dict):
                input_data.update(output)
        return input_data

    @staticmethod
    def _inputs_seen(node_type: str, data: dict[str, Any], context: RuntimeContext) -> Any:
        """What the node is given, for the record: the prompts as sent to a model, or the
        `{value}` other nodes work on."""
        if node_type not in ("llm", "agent"):
            return {"value": context.value()} if node_type not in ("start", "end") else {}
        seen: dict[str, Any] = {}
        for name in ("system_prompt", "prompt"):
            if isinstance(data.get(name), str):
                try:
                    seen[name] = render(data[name], context.resolve)
                except TemplateError as exc:  # the node's own run fails with it, clearly
                    seen[name] = exc.render("en")
        return seen

    def command(
        self, key: str, attempt: int, context: RuntimeContext | None = None
    ) -> NodeRunCommand:
        record = self.execution.nodes[key]
        node_id = record["node_id"]
        node = self.index.nodes_by_id[node_id]
        if context is None:
            context = self.context(node_id, path_of(record, key))
        return NodeRunCommand(
            execution_id=str(self.execution.id),
            run_key=key,
            node_id=node_id,
            node_type=node.type,
            attempt=attempt,
            data=node.data,
            input_data=dict(context.input_data),
            node_types=dict(context.node_types),
            records=dict(context.records),
            upstream=list(context.upstream),
            loops=[
                LoopFrameIn(
                    loop_id=f.loop_id,
                    item_variable=f.item_variable,
                    item=f.item,
                    index=f.index,
                    count=f.count,
                )
                for f in context.loops
            ],
            language=self.language,
            owner_id=str(self.execution.owner_id),
            trace=dict(getattr(self.execution, "trace", {}) or {}),
        )

    # -- restarts and the end ----------------------------------------------------------------

    def _redispatch(self) -> None:
        """Send again what was in flight when the process stopped: a running node's command
        (lost if the crash came between saving and publishing; JetStream drops it if it was
        sent), and a retrying node's next attempt (its backoff timer died with the process)."""
        for key, node in list(self.execution.nodes.items()):
            if node["node_type"] == "loop":
                continue  # loops are followed by the pass itself
            if node["status"] == "running":
                self._send(key, node["attempt"])
            elif node["status"] == "retrying":
                self.start_again(key, node["attempt"] + 1)

    def start_again(self, key: str, attempt: int) -> None:
        node = self.execution.nodes.get(key)
        if self.execution.status in FINAL_STATUSES or node is None:
            return
        if self.execution.record_node_started(
            key, node["node_id"], node["node_type"], attempt, node["inputs"] or {}
        ):
            self.changed = True
            self._send(key, attempt)

    def _conclude(self) -> bool:
        execution, index = self.execution, self.index
        nodes = execution.nodes
        top = set(index.top_level)
        failed = [k for k, n in nodes.items() if n["status"] == "failed" and k in top]
        if failed:
            node = nodes[failed[0]]
            message = messages.NODE_FAILED.render(
                "zh", node_id=node["node_id"], error=node["error"]
            )
            return execution.fail(message, node["node_id"])
        completed = [k for k, n in nodes.items() if k in top and n["status"] == "completed"]
        ends = [k for k in completed if nodes[k]["node_type"] == "end"]
        end_record = nodes[ends[0]]["output"] if ends else None
        outputs = [nodes[k]["output"] for k in completed if nodes[k]["node_type"] == "output"]
        before_end = None
        if ends:
            sources = [e.source for e in index.incoming[ends[0]]]
            ran = [s for s in sources if nodes.get(s, {}).get("status") == "completed"]
            before_end = nodes[ran[0]]["output"] if ran else None
        return execution.finish(final_output_data(end_record, outputs, before_end))
