"""Without n8n installed the `peer` scenario says it is skipped, why, and how to install n8n,
and the benchmark still succeeds; it starts nothing (no n8n, no platform)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import main


def run_peer_only(tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "results.json"
    exit_code = main(["--only", "peer", "--duration", "1", "--out", str(out)])
    return exit_code, json.loads(out.read_text())


def test_peer_skips_with_the_install_command_when_n8n_home_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "n8n-home"
    home.mkdir()
    monkeypatch.setenv("N8N_HOME", str(home))

    exit_code, results = run_peer_only(tmp_path)

    assert exit_code == 0
    assert results["figures"] == []
    notes = [n for n in results["notes"] if n.startswith("peer: skipped")]
    assert len(notes) == 1, results["notes"]
    note = notes[0]
    assert f"n8n is not installed under {home}" in note
    assert "no n8n binary at" in note
    assert f"N8N_HOME={home} bash /work/shared/peers/n8n/install.sh" in note
    printed = capsys.readouterr().out
    assert note in printed  # on the console as it runs, and below the table
    assert printed.count(note) == 2


def test_a_half_finished_install_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "n8n-home"
    binary = home / "n8n/node_modules/.bin/n8n"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/usr/bin/env node\n")
    monkeypatch.setenv("N8N_HOME", str(home))

    exit_code, results = run_peer_only(tmp_path)

    assert exit_code == 0
    assert results["figures"] == []
    assert any("no Node 24 binary at" in n for n in results["notes"]), results["notes"]
