"""The built-in templates: each one valid, warned about nothing (every reference in them means
one thing), and runnable as it reads."""

from __future__ import annotations

import pytest

from services.executor.local_engine import run_locally
from services.workflows.catalog import TEMPLATES, Template, find_template
from shared.workflow.model import WorkflowGraph
from shared.workflow.validation import validate_workflow


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id)
def test_every_template_is_valid_without_warnings(template: Template) -> None:
    graph = WorkflowGraph.model_validate({"nodes": template.nodes, "edges": template.edges})
    report = validate_workflow(graph, "en")
    assert report.errors == []
    assert report.warnings == []


def test_template_ids_are_unique() -> None:
    ids = [template.id for template in TEMPLATES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("value", "output"),
    [(15, {"over_10": True, "value": 15}), (5, {"over_10": False, "value": 5})],
)
def test_the_number_threshold_template_takes_the_branch_its_value_calls_for(
    value: int, output: dict[str, object]
) -> None:
    template = find_template("number-threshold")
    assert template is not None
    graph = {"nodes": template.nodes, "edges": template.edges}
    execution = run_locally(graph, {"value": value}, inline=True)
    assert execution.status == "completed", execution.error
    assert execution.output_data == output
