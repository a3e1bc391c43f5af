"""Settings as people write them: lists with commas, a `.env` file, and one readable line
(not a traceback) when a process cannot use a value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field

from services.auth.settings import AuthSettings
from services.datasources.settings import DataSourcesSettings
from services.executor.settings import WorkerSettings
from shared.settings import DEFAULT_JWT_SECRET, PlatformSettings, StrList
from shared.settings_loading import load_settings

REPO = Path(__file__).resolve().parents[2]
STRONG = "s3cret-" + "x" * 40


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("AGENTFLOW_") or key == "NATS_URL":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # a directory of the test's own, with no .env unless it writes one


def development(**values: str) -> dict[str, str]:
    return {"AGENTFLOW_ENVIRONMENT": "development", **values}


@pytest.mark.parametrize(
    ("written", "networks"),
    [
        ("127.0.0.0/8", ["127.0.0.0/8"]),
        ("10.0.0.0/8,127.0.0.1/32", ["10.0.0.0/8", "127.0.0.1/32"]),
        (" 10.0.0.0/8 , 127.0.0.1/32 ", ["10.0.0.0/8", "127.0.0.1/32"]),
        ("10.0.0.0/8 192.168.0.0/16", ["10.0.0.0/8", "192.168.0.0/16"]),
        ('["10.0.0.0/8", "127.0.0.1/32"]', ["10.0.0.0/8", "127.0.0.1/32"]),
        ("[10.0.0.0/8, 127.0.0.1/32]", ["10.0.0.0/8", "127.0.0.1/32"]),
        ("'10.0.0.0/8'", ["10.0.0.0/8"]),
        ("", []),
        ("[]", []),
    ],
)
def test_lists_are_read_as_people_write_them(
    monkeypatch: pytest.MonkeyPatch, written: str, networks: list[str]
) -> None:
    monkeypatch.setenv("AGENTFLOW_OUTBOUND_ALLOW_NETWORKS", written)
    settings = PlatformSettings(environment="development")
    assert settings.outbound_allow_networks == networks
    settings.outbound_policy()  # and the guard takes them


class _Names(PlatformSettings):
    """Any list setting a service adds takes the same forms (`StrList`)."""

    names: StrList = Field(default_factory=list)


@pytest.mark.parametrize(
    ("written", "names"),
    [
        ("a,b c", ["a", "b c"]),  # commas only: a value may hold spaces
        ('["a,b", "c"]', ["a,b", "c"]),  # JSON when a value holds a comma
        ("", []),
    ],
)
def test_any_list_setting_takes_commas_or_json(
    monkeypatch: pytest.MonkeyPatch, written: str, names: list[str]
) -> None:
    monkeypatch.setenv("AGENTFLOW_NAMES", written)
    assert _Names(environment="development").names == names


def test_a_list_from_code_and_from_dotenv(tmp_path: Path) -> None:
    assert PlatformSettings(
        environment="development", outbound_allow_networks=["10.0.0.0/8"]
    ).outbound_allow_networks == ["10.0.0.0/8"]
    (tmp_path / ".env").write_text("AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=10.1.0.0/16,10.2.0.0/16\n")
    assert PlatformSettings(environment="development").outbound_allow_networks == [
        "10.1.0.0/16",
        "10.2.0.0/16",
    ]


def loaded_or_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    values: dict[str, str],
    settings_class: type[PlatformSettings] = AuthSettings,
) -> str:
    """The one stderr line of a process that cannot start with `values` (fails if it can)."""
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings(settings_class, "agentflow-test")
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            development(AGENTFLOW_OUTBOUND_ALLOW_NETWORKS="10.0.0.1/8"),
            "agentflow-test: setting AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=10.0.0.1/8 cannot be "
            "read: not an IP network: '10.0.0.1/8' (10.0.0.1/8 has host bits set); for example "
            "AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=10.0.0.0/8,127.0.0.1/32",
        ),
        (
            development(AGENTFLOW_OUTBOUND_ALLOW_NETWORKS='["10.0.0.0/8",'),
            'agentflow-test: setting AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=["10.0.0.0/8", cannot be '
            "read: starts like a JSON list but is not one; for example "
            "AGENTFLOW_OUTBOUND_ALLOW_NETWORKS=10.0.0.0/8,127.0.0.1/32",
        ),
        (
            development(AGENTFLOW_JWT_TTL_MINUTES="one day"),
            "agentflow-test: setting AGENTFLOW_JWT_TTL_MINUTES=one day cannot be read: input "
            "should be a valid integer, unable to parse string as an integer; for example "
            "AGENTFLOW_JWT_TTL_MINUTES=1440",
        ),
        (
            {"AGENTFLOW_ENVIRONMENT": "prod"},
            "agentflow-test: setting AGENTFLOW_ENVIRONMENT=prod cannot be read: input should be "
            "'development', 'test' or 'production'; for example AGENTFLOW_ENVIRONMENT="
            "development (one of: development, test, production)",
        ),
        (
            development(AGENTFLOW_AUTH_PORT="81o1"),  # a field read from its own name
            "agentflow-test: setting AGENTFLOW_AUTH_PORT=81o1 cannot be read: input should be a "
            "valid integer, unable to parse string as an integer; for example "
            "AGENTFLOW_AUTH_PORT=8101",
        ),
        (
            development(AGENTFLOW_STORE="mysql"),
            "agentflow-test: setting AGENTFLOW_STORE=mysql cannot be read: input should be "
            "'sqlite' or 'postgres'; for example AGENTFLOW_STORE=sqlite (one of: sqlite, "
            "postgres)",
        ),
        (
            development(AGENTFLOW_ENV_FILE="/no/such/file.env"),
            "agentflow-test: setting AGENTFLOW_ENV_FILE=/no/such/file.env cannot be read: no "
            "such file; for example AGENTFLOW_ENV_FILE=.env",
        ),
    ],
)
def test_a_value_that_cannot_be_read_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    values: dict[str, str],
    expected: str,
) -> None:
    assert loaded_or_line(monkeypatch, capsys, values) == expected


def test_nats_url_is_named_as_it_was_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = loaded_or_line(
        monkeypatch, capsys, development(NATS_URL="nats://x", AGENTFLOW_NATS_CONNECT_TIMEOUT_S="")
    )
    assert line.startswith("agentflow-test: setting AGENTFLOW_NATS_CONNECT_TIMEOUT_S= cannot")


def test_several_problems_are_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = loaded_or_line(
        monkeypatch,
        capsys,
        development(AGENTFLOW_JWT_TTL_MINUTES="x", AGENTFLOW_STORE="y", AGENTFLOW_AUTH_PORT="z"),
    )
    assert line.startswith("agentflow-test: setting AGENTFLOW_JWT_TTL_MINUTES=x cannot be read")
    assert line.endswith("(and 2 more: AGENTFLOW_STORE, AGENTFLOW_AUTH_PORT)")


def test_secrets_are_never_printed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    short = "hunter2-short"
    line = loaded_or_line(monkeypatch, capsys, {"AGENTFLOW_JWT_SECRET": short})
    assert short not in line
    assert line.startswith(
        "agentflow-test: setting AGENTFLOW_JWT_SECRET=<hidden> is refused: it must be at least "
        "32 characters; for example AGENTFLOW_JWT_SECRET=<32+ random characters"
    )
    unset = loaded_or_line(monkeypatch, capsys, {"AGENTFLOW_JWT_SECRET": DEFAULT_JWT_SECRET})
    assert DEFAULT_JWT_SECRET not in unset
    assert "AGENTFLOW_ENVIRONMENT=development" in unset  # the way out on a developer's machine
    monkeypatch.delenv("AGENTFLOW_JWT_SECRET")
    line = loaded_or_line(
        monkeypatch,
        capsys,
        {"AGENTFLOW_JWT_SECRET": STRONG, "AGENTFLOW_DATASOURCE_QUERY_KEY": STRONG},
        DataSourcesSettings,
    )
    assert line.startswith("agentflow-test: setting AGENTFLOW_SECRETS_KEYS=(unset) is refused")
    assert STRONG not in line


def test_tools_do_not_refuse_secrets_they_never_use(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLIs sign and verify nothing: production's refusal of the development JWT secret
    and query key is the services' and workers' business."""
    with pytest.raises(SystemExit):
        load_settings(AuthSettings, "agentflow-auth")
    capsys.readouterr()
    tool = load_settings(AuthSettings, "agentflow-auth", tool=True)
    assert isinstance(tool, AuthSettings)
    assert tool.environment == "production"
    assert load_settings(WorkerSettings, "agentflow-audit", tool=True).holds_query_key is False
    assert WorkerSettings.holds_query_key is True  # the class the workers use is untouched


def test_dotenv_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AGENTFLOW_ENVIRONMENT=development\nAGENTFLOW_JWT_ISSUER=file\n")
    assert load_settings(AuthSettings, "agentflow-auth").jwt_issuer == "file"
    monkeypatch.setenv("AGENTFLOW_JWT_ISSUER", "environment")
    assert load_settings(AuthSettings, "agentflow-auth").jwt_issuer == "environment"


def test_agentflow_env_file_chooses_the_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("AGENTFLOW_ENVIRONMENT=development\nAGENTFLOW_JWT_ISSUER=dot\n")
    other = tmp_path / "elsewhere.env"
    other.write_text("AGENTFLOW_ENVIRONMENT=test\nAGENTFLOW_JWT_ISSUER=other\n")
    monkeypatch.setenv("AGENTFLOW_ENV_FILE", str(other))
    chosen = PlatformSettings()
    assert (chosen.environment, chosen.jwt_issuer) == ("test", "other")
    monkeypatch.setenv("AGENTFLOW_ENV_FILE", "")  # what the tests' processes get
    none = PlatformSettings(jwt_secret=STRONG)
    assert (none.environment, none.jwt_issuer) == ("production", "agentflow")


ENTRYPOINTS = [
    ["-m", "services.auth"],
    ["-m", "services.workflows"],
    ["-m", "services.executor"],
    ["-m", "services.executor.worker"],
    ["-m", "services.datasources"],
    ["-m", "services.gateway"],
]


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS, ids=lambda argv: argv[-1])
def test_a_process_with_a_malformed_setting_says_so_in_one_line(
    entrypoint: list[str], tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    env.update(
        AGENTFLOW_ENV_FILE="",
        AGENTFLOW_ENVIRONMENT="development",
        AGENTFLOW_DATA_DIR=str(tmp_path / "data"),
        AGENTFLOW_OUTBOUND_ALLOW_NETWORKS="127.0.0.1/8",  # host bits set: truly unreadable
        AGENTFLOW_LOG_FORMAT="xml",
    )
    started = subprocess.run(
        [sys.executable, *entrypoint], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert started.returncode == 2, started.stderr
    assert started.stdout == ""
    lines = started.stderr.splitlines()
    assert len(lines) == 1, started.stderr
    assert "Traceback" not in started.stderr
    name = "worker" if entrypoint[-1].endswith("worker") else entrypoint[-1].split(".")[-1]
    assert lines[0].startswith(
        f"agentflow-{name}: setting AGENTFLOW_LOG_FORMAT=xml cannot be read: input should be "
        "'text' or 'json'; for example AGENTFLOW_LOG_FORMAT=text (one of: text, json) "
        "(and 1 more: AGENTFLOW_OUTBOUND_ALLOW_NETWORKS)"
    ), lines[0]
