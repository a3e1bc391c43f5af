"""The data sources service's Prometheus metrics, by source type and outcome (never ids)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

QUERIES = Counter(
    "agentflow_datasource_queries_total",
    "Queries run on data sources.",
    ["type", "outcome"],  # ok, or the error kind: refused, bad_query, timeout, auth, ...
)
QUERY_SECONDS = Histogram(
    "agentflow_datasource_query_seconds",
    "Wall time of one data source query.",
    ["type"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TESTS = Counter(
    "agentflow_datasource_tests_total",
    "Connection tests, by outcome (ok or the error kind).",
    ["type", "outcome"],
)
