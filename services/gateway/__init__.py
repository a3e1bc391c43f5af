"""Gateway: the one public surface on :8037: routing, auth check, docs, WebSocket fan-out."""
