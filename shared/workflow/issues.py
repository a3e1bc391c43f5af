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


class IssueCollector:
    """Gathers issues while checks run; `key` picks a message variant ("CODE:variant")."""

    def __init__(self, language: Language) -> None:
        self.language = language
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []

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
        self.errors.append(self._issue(key, node_id, edge_id, field, params))

    def warning(
        self,
        key: str,
        *,
        node_id: str | None = None,
        edge_id: str | None = None,
        field: str | None = None,
        **params: Any,
    ) -> None:
        self.warnings.append(self._issue(key, node_id, edge_id, field, params))

    def report(self) -> ValidationReport:
        return ValidationReport(
            valid=not self.errors, errors=list(self.errors), warnings=list(self.warnings)
        )
