"""`agentflow-audit` (and the other CLIs) as an operator runs them: a process in a checkout
whose `.env` holds the settings `make run` uses, nothing exported, a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.auth.application import AuthApplication
from services.auth.settings import AuthSettings
from tests.support.processes import NatsServer
from tests.unit.test_audit_replay import publish

CLIS = [
    "services.audit.cli",
    "services.auth.cli",
    "services.workflows.cli",
    "services.datasources.cli",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    own = NatsServer(tmp_path_factory.mktemp("nats"))
    own.start()
    asyncio.run(publish(own.url, 1200))  # more than one fetch (500) of the replay
    yield own
    own.stop()


@pytest.fixture
def checkout(tmp_path: Path, server: NatsServer) -> Path:
    """A working directory with the `.env` a developer copies from `.env.example`, plus where
    this test's NATS and data are."""
    example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert "\nAGENTFLOW_ENVIRONMENT=development\n" in example
    (tmp_path / ".env").write_text(f"{example}\nNATS_URL={server.url}\nAGENTFLOW_DATA_DIR=data\n")
    return tmp_path


def run(cwd: Path, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """A CLI with nothing of the platform's exported (the test runner's own AGENTFLOW_ENV_FILE
    included): only what the working directory holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    env.pop("NATS_URL", None)
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-m", *argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_the_stream_is_replayed_whole_as_json_lines_and_as_a_table(checkout: Path) -> None:
    lines = run(checkout, "services.audit.cli", "stream", "--json")
    assert lines.returncode == 0, lines.stderr
    numbers = [json.loads(line)["number"] for line in lines.stdout.splitlines()]
    assert numbers == list(range(1200))
    assert lines.stderr == ""  # no progress bar in a log: stderr is not a terminal

    table = run(checkout, "services.audit.cli", "stream", "--format", "table")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert re.search(r"position\s+time\s+type\s+aggregate id\s+version", table.stdout)
    assert sum(1 for row in rows if re.fullmatch(r"\s*\d+\s+Test\s*", row)) == 1200
    assert "1200 events" in table.stdout


def test_progress_is_drawn_on_a_terminal_while_the_output_is_piped(checkout: Path) -> None:
    shown = run(checkout, "services.audit.cli", "stream", "--json", TTY_COMPATIBLE="1")
    assert shown.returncode == 0, shown.stderr
    assert len(shown.stdout.splitlines()) == 1200  # the records never go to the terminal
    assert "EVENTS stream" in shown.stderr
    assert "1200/1200" in shown.stderr


def test_the_tools_read_the_checkouts_dotenv(checkout: Path) -> None:
    """Without anything exported: development from `.env`, so the data sources store opens
    without AGENTFLOW_SECRETS_KEYS (a key is made under the `.env`'s data directory)."""
    store = run(checkout, "services.audit.cli", "store", "datasources", "--format", "table")
    assert store.returncode == 0, store.stderr
    assert "0 events" in store.stdout
    assert (checkout / "data" / "datasources-secret.key").exists()
    rebuilt = run(checkout, "services.workflows.cli", "rebuild-read-model")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt from 0 stored events" in rebuilt.stdout

    for without in ({"AGENTFLOW_ENV_FILE": ""}, {"AGENTFLOW_ENV_FILE": str(checkout / "none")}):
        refused = run(checkout, "services.audit.cli", "store", "datasources", **without)
        assert refused.returncode == 2
        assert len(refused.stderr.splitlines()) == 1, refused.stderr
        assert "Traceback" not in refused.stderr
    (checkout / ".env").unlink()
    refused = run(checkout, "services.audit.cli", "store", "datasources")
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        "agentflow-audit: setting AGENTFLOW_SECRETS_KEYS=(unset) is refused"
    )


def test_verify_and_history_print_tables(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user stored by the auth service but never published (no relay ran): verify fails and
    says what is missing, in a table and in JSON."""
    monkeypatch.chdir(checkout)
    monkeypatch.setenv("AGENTFLOW_ENV_FILE", "")
    settings = AuthSettings(
        environment="development", data_dir=checkout / "data", argon2_memory_kib=8192,
        argon2_time_cost=1,
    )  # fmt: skip
    app = AuthApplication(settings)
    try:
        user = app.register("auditee", "auditee@example.com", "wonderland42")
    finally:
        app.close()

    verify = run(checkout, "services.audit.cli", "verify", "auth")
    assert verify.returncode == 1, verify.stderr
    assert re.search(r"missing from the stream\s+1\b", verify.stdout)
    assert re.search(r"stream read up to sequence\s+1200\b", verify.stdout)
    assert "FAILED" in verify.stdout
    report = json.loads(run(checkout, "services.audit.cli", "verify", "auth", "--json").stdout)
    assert (report["stored_publishable"], report["missing"], report["published"]) == (1, 1, 0)

    history = run(checkout, "services.audit.cli", "history", "auth", str(user.id))
    assert history.returncode == 0, history.stderr
    assert re.search(r"version\s+time\s+type\s+data", history.stdout)
    assert "User.Registered" in history.stdout
    assert "auditee" in history.stdout
    assert "wonderland42" not in history.stdout
    assert "argon2" not in history.stdout  # no password hash, redacted or never stored
    as_json = run(checkout, "services.audit.cli", "history", "auth", str(user.id), "--json")
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert records[0]["type"] == "User.Registered"
    assert records[-1]["state_at_version"]["state"]["username"] == "auditee"


def _prose(help_text: str) -> list[str]:
    """The description and epilog paragraphs of a --help (not the usage, not the argument
    lists, not indented examples)."""
    paragraphs = help_text.split("\n\n")[1:]
    return [
        p for p in paragraphs
        if p.strip() and not p.startswith((" ", "positional arguments:", "options:"))
    ]  # fmt: skip


def help_of(module: str, *argv: str) -> str:
    main = importlib.import_module(module).main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return out.getvalue()


@pytest.mark.parametrize("module", CLIS)
def test_help_texts_end_their_sentences(module: str) -> None:
    top = help_of(module)
    commands = re.search(r"\{([a-z,-]+)\}", top)
    names = commands.group(1).split(",") if commands else []
    if module == "services.audit.cli":
        names = ["stream", "store", "history", "verify", "rebuild-check"]
        assert "replay and verify the platform's event history.\n" in top
    assert names
    for text in [top] + [help_of(module, name) for name in names]:
        prose = _prose(text)
        assert prose, text  # every command says what it does
        for paragraph in prose:
            assert paragraph.rstrip().endswith((".", ")", ":")), paragraph
