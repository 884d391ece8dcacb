"""Application recorders for SQLite and PostgreSQL that also keep content-addressed blobs.

Blobs (message heads and bodies) are inserted by the same transaction that records the events
referring to them, before those events, through the recorders' `_insert_events` hook (the hook
eventsourcing's process recorders use for tracking rows). A blob is therefore never missing for
an event, and an aborted transaction leaves no orphan blob.

The PostgreSQL recorder does not retry failed writes and reads: callers answer the client
(HTTP 503, SMTP 451) instead of holding the request through ten reconnect attempts. It also
inserts events from four typed arrays, which psycopg sends in binary from C, instead of the
library's array of composite values, which psycopg escapes as text in Python (about two thirds
of the cost of a large group commit).
"""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from adapters.multirow import insert_rows

Blob = tuple[str, bytes]  # (sha256 hex, data)

BLOB_TABLE = "postline_blobs"


class SQLiteEventStore(SQLiteApplicationRecorder):
    """SQLite events plus the blob table, in one file."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            f"CREATE TABLE IF NOT EXISTS {BLOB_TABLE} "
            "(sha256 TEXT PRIMARY KEY, data BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert blobs, then events, each with multi-row statements (see adapters.multirow).

        Writers are serialised by SQLite's write lock and rows are never deleted, so the rowids
        (notification ids) of one multi-row insert are consecutive and end at `lastrowid`.
        """
        blobs: Sequence[Blob] = kwargs.get("blobs", ())
        sqlite_cursor = c.sqlite_cursor
        insert_rows(sqlite_cursor, f"INSERT OR IGNORE INTO {BLOB_TABLE} (sha256, data)", blobs)
        rows = [
            (
                s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                s.originator_version,
                s.topic,
                s.state,
            )
            for s in stored_events
        ]
        ids: list[int] = []
        for last, count in insert_rows(
            sqlite_cursor, f"INSERT INTO {self.events_table_name}", rows
        ):
            ids.extend(range(last - count + 1, last + 1))
        return ids

    def get_blob(self, sha256: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT data FROM {BLOB_TABLE} WHERE sha256 = ?", (sha256,))  # noqa: S608
            row = c.fetchone()
        return None if row is None else bytes(row["data"])


class PostgresEventStore(PostgresApplicationRecorder):
    """PostgreSQL events plus the blob table, in the configured schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(BLOB_TABLE))
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (sha256 text PRIMARY KEY, data bytea NOT NULL)"
            ).format(table)
        )
        self._insert_blobs = SQL(
            "INSERT INTO {} (sha256, data) SELECT * FROM unnest(%b::text[], %b::bytea[]) "
            "ON CONFLICT DO NOTHING"
        ).format(table)
        self._insert_event_arrays = SQL(
            "INSERT INTO {}.{} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) "
            "RETURNING notification_id"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        self._select_blob = SQL("SELECT data FROM {} WHERE sha256 = %s").format(table)

    # The library's versions are wrapped in a retry decorator (ten attempts, 0.2 s apart, each
    # waiting up to the connect timeout); these call the undecorated functions so a lost
    # database is reported at once and callers decide (answer 503, back off and poll again).
    insert_events = PostgresApplicationRecorder.insert_events.__wrapped__  # type: ignore[attr-defined]
    select_events = PostgresApplicationRecorder.select_events.__wrapped__  # type: ignore[attr-defined]
    select_notifications = (
        PostgresApplicationRecorder.select_notifications.__wrapped__  # type: ignore[attr-defined]
    )
    max_notification_id = (
        PostgresApplicationRecorder.max_notification_id.__wrapped__  # type: ignore[attr-defined]
    )

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        blobs: Sequence[Blob] = kwargs.get("blobs", ())
        if blobs:
            curs.execute(self._insert_blobs, ([sha for sha, _ in blobs], [d for _, d in blobs]))

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self._insert_event_arrays,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
        )

    def get_blob(self, sha256: str) -> bytes | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_blob, (sha256,))
            row = curs.fetchone()
        return None if row is None else bytes(row["data"])
