"""The operator's audit tool: replay and verify the event history (no HTTP service)."""
