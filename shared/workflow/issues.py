"""The validation report: issues with stable English codes and localized messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.i18n import Language
from shared.workflow.validation_messages import MESSAGES


class Issue(BaseModel):
    code: str
    message: str
    node_id: str | None = None
    edge_id: str | None = None
    field: str | None = None


class ValidationReport(BaseModel):
    valid: bool
    errors: list[Issue]
    warnings: list[Issue]


# Issues reported per kind; beyond it one TOO_MANY_ISSUES counts the rest. A graph of 2000
# broken nodes could otherwise answer with a hundred thousand issues (megabytes).
MAX_ISSUES = 500


class IssueCollector:
    """Gathers issues while checks run; `key` picks a message variant ("CODE:variant")."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.left_out = {"errors": 0, "warnings": 0}

    def _issue(
        self,
        key: str,
        node_id: str | None,
        edge_id: str | None,
        field: str | None,
        params: dict[str, Any],
    ) -> Issue:
        # Messages may name the node, edge and field the issue is attached to.
        values = {"node": node_id, "edge": edge_id, "field": field, **params}
        return Issue(
            code=key.split(":")[0],
            message=MESSAGES[key].render(self.language, **values),
            node_id=node_id,
            edge_id=edge_id,
            field=field,
        )

    def error(
        self,
        key: str,
        *,
        node_id: str | None = None,
        edge_id: str | None = None,
        field: str | None = None,
        **params: Any,
    ) -> None:
        if len(self.errors) < MAX_ISSUES:
            self.errors.append(self._issue(key, node_id, edge_id, field, params))
        else:
            self.left_out["errors"] += 1

    def warning(
        self,
        key: str,
        *,
        node_id: str | None = None,
        edge_id: str | None = None,
        field: str | None = None,
        **params: Any,
    ) -> None:
        if len(self.warnings) < MAX_ISSUES:
            self.warnings.append(self._issue(key, node_id, edge_id, field, params))
        else:
            self.left_out["warnings"] += 1

    def report(self) -> ValidationReport:
        errors, warnings = list(self.errors), list(self.warnings)
        for kind, issues in (("errors", errors), ("warnings", warnings)):
            if self.left_out[kind]:
                more = {"count": self.left_out[kind], "shown": MAX_ISSUES}
                issues.append(self._issue(f"TOO_MANY_ISSUES:{kind}", None, None, None, more))
        return ValidationReport(valid=not errors, errors=errors, warnings=warnings)
