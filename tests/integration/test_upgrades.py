"""An upgrade over stores the previous release wrote: the platform's services start on read
models of an older version (a column missing, rows of the old meaning) and on an execution
recorded before its Created event had `trace`. The lists are rebuilt at start and take new
rows; the old execution is carried on to its end. docs/upgrades.md."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from eventsourcing.persistence import StoredEvent

from services.executor.application import ExecutorApplication
from services.executor.domain import Execution
from services.executor.readmodel import ExecutionList, execution_table
from services.executor.settings import ExecutorSettings
from services.workflows.readmodel import WorkflowList, workflow_table
from services.workflows.settings import WorkflowsSettings
from shared.readmodel import read_model_engine, read_model_metadata
from shared.settings import ServiceSettings
from tests.integration.test_executions import E, W, create_workflow, edge, node, wait_finished
from tests.support.stack import Stack


def greeting(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "nodes": [
            node("start-1", "start"),
            node("t-1", "transform", template="你好,{input.who}!"),
            node("end-1", "end"),
        ],
        "edges": [edge("start-1", "t-1"), edge("t-1", "end-1")],
    }


@contextmanager
def settings_of(stack: Stack, kind: type[ServiceSettings]) -> Iterator[ServiceSettings]:
    """A service's settings as the stack's processes read them (store, schema, data dir)."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("AGENTFLOW_")]:
            del os.environ[key]
        os.environ.update({k: v for k, v in stack.env.items() if k.startswith("AGENTFLOW_")})
        os.environ["AGENTFLOW_ENV_FILE"] = ""
        yield kind()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def make_older(settings: ServiceSettings, table: sa.Table, name: str, missing: str) -> None:
    """Leave `table` as the previous release would have: without the column `missing`, its
    rows written in the old meaning (here: every text upper-cased), tracked by the version
    before the current one."""
    engine = read_model_engine(settings)
    try:
        with engine.begin() as conn:
            rows = [dict(row) for row in conn.execute(sa.select(table)).mappings()]
            table.drop(conn)
            old = sa.Table(
                f"{table.name}",
                sa.MetaData(schema=table.schema),
                *(
                    sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
                    for c in table.columns
                    if c.name != missing
                ),
            )
            old.create(conn)
            for row in rows:
                del row[missing]
                conn.execute(
                    old.insert().values(
                        {k: v.upper() if isinstance(v, str) and k != "id" else v
                         for k, v in row.items()}
                    )
                )  # fmt: skip
            tracking = sa.Table("projection_tracking", sa.MetaData(schema=table.schema),
                                autoload_with=conn)  # fmt: skip
            updated = conn.execute(
                tracking.update().where(tracking.c.name == name).values(version=0)
            )
            assert updated.rowcount == 1
    finally:
        engine.dispose()


def record_before_traces(
    settings: ServiceSettings, owner: str, workflow: dict[str, Any], who: str
) -> str:
    """An execution asked for and recorded by the release before traces: its Created event
    has no `trace` and no version mark. Recorded through the executor's own recorder."""
    assert isinstance(settings, ExecutorSettings)
    app = ExecutorApplication(settings)
    try:
        graph = {"nodes": workflow["nodes"], "edges": workflow["edges"]}
        execution = Execution(
            UUID(owner), UUID(workflow["id"]), workflow["version"], workflow["name"], graph,
            {"who": who},
        )  # fmt: skip
        [created] = execution.collect_events()
        stored = app.mapper.to_stored_event(created)
        state = app.mapper.transcoder.decode(stored.state)
        del state["trace"], state["class_version"]
        app.recorder.insert_events(
            [
                StoredEvent(
                    originator_id=stored.originator_id,
                    originator_version=stored.originator_version,
                    topic=stored.topic,
                    state=app.mapper.transcoder.encode(state),
                )
            ]
        )
        return str(execution.id)
    finally:
        app.close()


def names(client: httpx.Client) -> list[str]:
    listed = client.get(W, params={"sort_by": "name", "sort_order": "asc"})
    assert listed.status_code == 200, listed.text
    return [item["name"] for item in listed.json()]


@pytest.mark.timeout(300)
def test_the_upgraded_services_start_on_the_previous_release_s_stores(fresh_stack: Any) -> None:
    stack: Stack = fresh_stack(workers=1).start()
    client, user = stack.user_client()
    with client:
        beta = create_workflow(client, greeting("beta"))
        create_workflow(client, greeting("Alpha"))
        ran = client.post(f"{W}/{beta}/execute", json={"input_data": {"who": "先前"}}).json()
        assert wait_finished(client, ran["id"])["status"] == "completed"
        workflow = client.get(f"{W}/{beta}").json()

        # The previous release stops; its stores are what the new one starts on.
        stack.workflows.stop()
        stack.executor.stop()
        with settings_of(stack, WorkflowsSettings) as settings:
            table = workflow_table(read_model_metadata(settings))
            make_older(settings, table, "workflow_list", missing="sort_name")
        with settings_of(stack, ExecutorSettings) as settings:
            table = execution_table(read_model_metadata(settings))
            make_older(settings, table, "execution_list", missing="search_text")
            old_run = record_before_traces(settings, user["id"], workflow, "旧版本")

        stack.workflows.start()
        stack.executor.start()
        stack.workflows.wait_ready()
        stack.executor.wait_ready()

        assert names(client) == ["Alpha", "beta"]  # sorted by `sort_name`, rows recomputed
        create_workflow(client, greeting("gamma"))  # a new row, in the new shape
        assert names(client) == ["Alpha", "beta", "gamma"]

        record = wait_finished(client, old_run, timeout=60)  # carried on after the start
        assert (record["status"], record["output_data"]) == (
            "completed",
            {"result": "你好,旧版本!"},
        )
        found = client.get(E, params={"search": "旧版本"})
        assert found.status_code == 200, found.text
        assert [item["id"] for item in found.json()] == [old_run]
        assert {item["id"] for item in client.get(E).json()} == {ran["id"], old_run}

    for service, model in ((stack.workflows, WorkflowList), (stack.executor, ExecutionList)):
        rebuilt = f"its rows were written by version 0, this is version {model.VERSION}"
        assert rebuilt in service.logs(), service.logs()[-2000:]
