"""Connectors: test and query a data source of each type (mysql, postgresql, api, json)."""

from services.datasources.connectors.base import (
    Connector,
    ConnectorError,
    ConnectorPool,
    ConnectorSettings,
    ErrorKind,
    QueryResult,
    build_connector,
)
from services.datasources.connectors.encoding import json_safe

__all__ = [
    "Connector",
    "ConnectorError",
    "ConnectorPool",
    "ConnectorSettings",
    "ErrorKind",
    "QueryResult",
    "build_connector",
    "json_safe",
]
