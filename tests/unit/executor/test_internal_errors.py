"""A bug in a runner fails its node with an incident id the user can quote; the exception's
class and text (ours, not the user's) stay in the log under that id."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from services.executor import inline
from shared.workflow.references import RuntimeContext


def broken_runner(*_: Any, **__: Any) -> Any:
    raise KeyError("internal-table-row")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_an_unexpected_exception_names_an_incident_not_the_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, language: Any
) -> None:
    monkeypatch.setattr(inline, "run_control", broken_runner)
    context = RuntimeContext(input_data={}, node_types={"t": "transform"}, records={})
    with caplog.at_level(logging.ERROR, logger="agentflow.executor.inline"):
        result, outcome = inline.run_inline(
            "exec-1", "t", 1, "transform", {"template": "x"}, context, language
        )
    assert outcome == "failed"
    error = result.error or ""
    assert "KeyError" not in error
    assert "internal-table-row" not in error
    found = re.search(r"[0-9a-f]{12}", error)
    assert found, error
    assert ("编号" if language == "zh" else "incident") in error
    # The operator finds the cause by that id.
    logged = [r for r in caplog.records if found.group(0) in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert "KeyError" in logged[0].getMessage()
