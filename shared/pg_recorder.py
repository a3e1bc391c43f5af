"""eventsourcing's PostgreSQL recorder, with large batches written outside pipeline mode.

The library writes each batch of events in psycopg's pipeline mode (fewer round trips). With a
batch of more than a few MB the client and the server can each wait for the other to read, for
ever: a 6 MB event hung the saving request here (psycopg 3.3.9, eventsourcing 9.5.6; 5 MB
passed). Batches over `PIPELINE_LIMIT_BYTES` are written with the same statements, table lock
and notification, in a plain transaction instead. Named by `APPLICATION_RECORDER_TOPIC` in
`ServiceSettings.event_store_env()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

PIPELINE_LIMIT_BYTES = 1024 * 1024


class PipelineSafeRecorder(PostgresApplicationRecorder):
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if sum(len(event.state) for event in stored_events) <= PIPELINE_LIMIT_BYTES:
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
        else:
            ids = self._insert_without_pipeline(stored_events, **kwargs)
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_without_pipeline(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction():
            with conn.cursor() as curs:
                self._insert_events(curs, stored_events, **kwargs)
            with conn.cursor() as curs:
                self._insert_stored_events(curs, stored_events, **kwargs)
                inserted: Sequence[int] | None = self._fetch_ids_after_insert_events(
                    curs, stored_events, **kwargs
                )
                return inserted
