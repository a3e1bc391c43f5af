"""Workflows service: event-sourced workflow definitions, versions, templates, import/export."""
