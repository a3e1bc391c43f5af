"""A save of several MB completes on every backend (on PostgreSQL such a batch once hung for
ever in psycopg's pipeline mode: shared/pg_recorder.py)."""

from __future__ import annotations

import threading
from typing import Any

from eventsourcing.domain import Aggregate, event

from services.auth.settings import AuthSettings
from shared.eventstore import EventSourcedApplication


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


def test_an_event_of_eight_megabytes_is_saved_and_read_back(auth_settings: AuthSettings) -> None:
    app = EventSourcedApplication(auth_settings)
    text = "数据" * (4 * 1024 * 1024)  # 8 MiB of characters, more as UTF-8
    outcome: dict[str, Any] = {}

    def save_and_read() -> None:
        note = Note(text)
        app.save(note)
        outcome["read"] = app.repository.get(note.id).text

    saving = threading.Thread(target=save_and_read, daemon=True)
    saving.start()
    saving.join(timeout=120)  # a safety net: the hang this guards against never returns
    try:
        assert not saving.is_alive(), "the save did not return"
        assert outcome["read"] == text
    finally:
        if not saving.is_alive():
            app.close()
