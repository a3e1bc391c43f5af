"""The benchmark suite runs end to end on tiny sizes (`--quick`): every scenario yields its
figures and no run is lost or wrong. Timings are never asserted: they belong to the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main
from bench.options import SCENARIOS

# Figures each scenario must produce, by the start of their scenario and metric names.
EXPECTED = {
    "latency": ["p50", "p90", "p99", "lost or wrong"],
    "throughput": [
        "completed/s",
        "latency p50",
        "latency p99",
        "lost or wrong",
        "driver CPU",
        "platform CPU per run",
        "CPU per run: executor",
        "CPU per run: worker0",
    ],
    "cost": ["node chain lost or wrong", "item loop lost or wrong"],
    "reads": ["requests/s", "p99", "not 200"],
    "llm": ["completed/s", "lost or wrong", "2w/1w"],
    "memory": ["executor RSS", "gateway RSS", "nats RSS", "worker0 RSS", "lost or wrong"],
    "replay": ["rebuild"],
    "outbox": ["store", "relay to JetStream"],
    "peer": [],  # skipped here: n8n is kept out of the smoke (tests/bench/test_peer_skip.py)
}


def test_every_scenario_yields_its_figures_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # n8n takes tens of seconds to start: the smoke sees the peer scenario skip instead.
    monkeypatch.setenv("N8N_HOME", str(tmp_path / "no-n8n"))
    out = tmp_path / "results.json"
    exit_code = main(["--quick", "--out", str(out)])
    results = json.loads(out.read_text())
    figures = results["figures"]
    for scenario in SCENARIOS:
        metrics = {f["metric"] for f in figures if f["scenario"].startswith(scenario)}
        missing = [m for m in EXPECTED[scenario] if m not in metrics]
        assert not missing, f"{scenario} lacks {missing}: {sorted(metrics)}"
    lost = [f for f in figures if "lost or wrong" in f["metric"] or f["metric"] == "not 200"]
    assert lost
    assert all(f["value"] == 0 for f in lost), [f for f in lost if f["value"]]
    assert not [f for f in figures if f["mark"] == "FAIL"]
    assert [n for n in results["notes"] if n.startswith("peer: skipped")]
    assert exit_code == 0
