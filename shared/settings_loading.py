"""Reading a process's settings at start: a value that cannot be used stops the process with
one line on stderr that names the variable, the value (secrets hidden), why, and an example,
instead of a pydantic traceback (exit status 2, like a command-line usage error).

    agentflow-auth: setting AGENTFLOW_JWT_TTL_MINUTES=abc cannot be read: input should be a
    valid integer, unable to parse string as an integer; for example AGENTFLOW_JWT_TTL_MINUTES=1440
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsError

from shared.settings import EnvFileMissing, InsecureSettingsError
from shared.text import shortened

S = TypeVar("S", bound=BaseSettings)

# The epilog of every command-line tool's --help.
SETTINGS_HELP = """\
Settings: the services' AGENTFLOW_* environment variables (and NATS_URL), or a .env file in the
working directory: `cp .env.example .env` gives the development settings `make run` uses.
docs/configuration.md lists every setting."""

USAGE_ERROR = 2
_SHOWN_CHARS = 80
_HIDDEN = "<hidden>"
_SECRET_WORDS = ("secret", "password", "key", "token")
_SETTINGS_ERROR_FIELD = re.compile(r'field "(?P<field>[^"]+)"')


@dataclass(frozen=True)
class SettingProblem:
    variable: str
    value: str  # as shown: secrets hidden, long values cut
    why: str
    example: str
    refused: bool = False  # read fine but not allowed (a development secret in production)

    def line(self, process: str) -> str:
        verb = "is refused" if self.refused else "cannot be read"
        return (
            f"{process}: setting {self.variable}={self.value} {verb}: {self.why}; "
            f"for example {self.variable}={self.example}"
        )


def load_settings(settings_class: type[S], process: str, *, tool: bool = False) -> S:
    """`settings_class()`, or exit 2 with one line on stderr saying which value is wrong.

    `tool`: an operator's tool (the CLIs), which signs and verifies nothing, so production
    does not refuse the development JWT secret or query key there."""
    if tool:
        settings_class = _for_tools(settings_class)
    try:
        return settings_class()
    except (ValidationError, SettingsError) as exc:
        print(settings_error_line(settings_class, exc, process), file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


def settings_error_line(
    settings_class: type[BaseSettings], exc: ValidationError | SettingsError, process: str
) -> str:
    """One line for the first problem, naming how many more there are and where."""
    problems = _problems(settings_class, exc)
    line = problems[0].line(process)
    if len(problems) > 1:
        others = ", ".join(dict.fromkeys(p.variable for p in problems[1:]))
        line += f" (and {len(problems) - 1} more: {others})"
    return line


def _for_tools(settings_class: type[S]) -> type[S]:
    namespace = {
        "holds_jwt_secret": False,
        "holds_query_key": False,
        "__module__": settings_class.__module__,
    }
    return type(f"Tool{settings_class.__name__}", (settings_class,), namespace)


def _problems(
    settings_class: type[BaseSettings], exc: ValidationError | SettingsError
) -> list[SettingProblem]:
    if isinstance(exc, EnvFileMissing):
        return [SettingProblem(exc.variable, exc.value, "no such file", ".env")]
    if isinstance(exc, SettingsError):  # a value pydantic-settings could not decode (JSON)
        match = _SETTINGS_ERROR_FIELD.search(str(exc))
        key = match.group("field") if match else "?"
        variable, field = _variable(settings_class, key)
        raw = _environment_value(variable)
        shown = _shown(raw if raw is not None else "", field, variable)
        return [SettingProblem(variable, shown, "not valid JSON", _example(field))]
    problems = [_problem(settings_class, error) for error in exc.errors()]
    return problems or [SettingProblem("?", "?", str(exc), "?")]


def _problem(settings_class: type[BaseSettings], error: ErrorDetails) -> SettingProblem:
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InsecureSettingsError):
        # Only refused secrets come here, so the value itself is never shown.
        value = _HIDDEN if _environment_value(cause.variable) is not None else "(unset)"
        return SettingProblem(cause.variable, value, cause.why, cause.example, refused=True)
    key = str(error["loc"][0]) if error["loc"] else "?"
    variable, field = _variable(settings_class, key)
    raw = error.get("input")
    value = raw if isinstance(raw, str) else _environment_value(variable) or str(raw)
    why = error["msg"].removeprefix("Value error, ")
    return SettingProblem(
        variable, _shown(value, field, variable), _lower_first(why), _example(field)
    )


def _variable(settings_class: type[BaseSettings], key: str) -> tuple[str, FieldInfo | None]:
    """The environment variable a field (or alias) named in an error is read from: the one set
    when a field has several names (`AGENTFLOW_NATS_URL`, `NATS_URL`)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    for name, field in settings_class.model_fields.items():
        names = _environment_names(prefix, name, field)
        if key == name or key.upper() in names:
            present = [n for n in names if _environment_value(n) is not None]
            return (present or names)[0], field
    return key.upper(), None


def _environment_names(prefix: str, name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, str):
        return [alias.upper()]
    if isinstance(alias, AliasChoices):
        names = [c.upper() for c in alias.choices if isinstance(c, str) and c != name]
        if names:
            return names
    return [f"{prefix}{name}".upper()]


def _environment_value(variable: str) -> str | None:
    """The process environment's value (names are case-insensitive, as the settings read
    them); None when unset there (it may still come from the dotenv file)."""
    for key, value in os.environ.items():
        if key.upper() == variable:
            return value
    return None


def _is_secret(field: FieldInfo | None, variable: str) -> bool:
    if field is not None and (
        field.annotation is SecretStr or SecretStr in get_args(field.annotation)
    ):
        return True
    return any(word in variable.lower() for word in _SECRET_WORDS)


def _shown(value: str, field: FieldInfo | None, variable: str) -> str:
    if _is_secret(field, variable):
        return _HIDDEN
    value = value.replace("\n", "\\n")
    return shortened(value, _SHOWN_CHARS)


def _example(field: FieldInfo | None) -> str:
    if field is None:
        return "…"
    if field.examples:
        return str(field.examples[0])
    annotation = field.annotation
    if get_origin(annotation) is Literal:
        choices = [str(choice) for choice in get_args(annotation)]
        return f"{choices[0]} (one of: {', '.join(choices)})"
    if annotation is bool:
        return "true"
    default: Any = field.get_default(call_default_factory=True)
    if default is None or isinstance(default, SecretStr):
        return "…"
    if isinstance(default, list | tuple | set):
        return ",".join(str(item) for item in default) or "a,b"
    return str(default)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
