"""The data sources service: MySQL, PostgreSQL, HTTP API and JSON sources, read-only."""
