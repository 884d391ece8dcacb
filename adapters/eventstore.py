"""Application recorders for SQLite and PostgreSQL that also keep content-addressed blobs.

Blobs (message heads and bodies) are inserted by the same transaction that records the events
referring to them, before those events, through the recorders' `_insert_events` hook (the hook
eventsourcing's process recorders use for tracking rows). A blob is therefore never missing for
an event, and an aborted transaction leaves no orphan blob.

The PostgreSQL recorder does not retry failed writes and reads: callers answer the client
(HTTP 503, SMTP 451) instead of holding the request through ten reconnect attempts. It appends
with one call of a server-side function, `postline_append`, that does what the library's insert
does (lock the table so that commit order is notification order, NOTIFY, insert) plus the
blobs, in one statement and one round trip; arguments are typed arrays that psycopg sends in
binary from C. The library's path costs about eight statements and a text-escaped array of
composite values per commit, which was most of the CPU of a group commit.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier, Literal

from adapters.multirow import insert_rows
from adapters.write_lock import WriteLock, lock_path

Blob = tuple[str, bytes]  # (sha256 hex, data)

BLOB_TABLE = "postline_blobs"


class LogEntry(NamedTuple):
    """A notification as a replay reads it (what the mapper needs to decode it)."""

    id: int
    topic: str
    state: bytes
    originator_id: UUID
    originator_version: int


_SQLITE_IN_LIMIT = 500  # parameters per IN list, well under SQLite's 32,766


class SQLiteEventStore(SQLiteApplicationRecorder):
    """SQLite events plus the blob table, in one file; writers queue on its write lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_lock = WriteLock(lock_path(self.datastore.pool.db_name))

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Any:
        with self.write_lock:
            return super().insert_events(stored_events, **kwargs)

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

    def read_log(self, start: int, stop: int, topics: Sequence[str]) -> Sequence[Any]:
        """The notifications of `topics` after `start` up to `stop` (see the PostgreSQL one)."""
        return self.select_notifications(
            start=start, limit=stop - start, stop=stop, topics=topics, inclusive_of_start=False
        )

    def get_blobs(self, shas: Sequence[str], max_bytes: int | None = None) -> dict[str, bytes]:
        """The blobs found among `shas` (of at most `max_bytes` each), in one transaction."""
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(shas))
        small = "" if max_bytes is None else f" AND length(data) <= {int(max_bytes)}"
        with self.datastore.transaction(commit=False) as c:
            for start in range(0, len(unique), _SQLITE_IN_LIMIT):
                chunk = unique[start : start + _SQLITE_IN_LIMIT]
                marks = ", ".join("?" * len(chunk))
                c.execute(
                    f"SELECT sha256, data FROM {BLOB_TABLE} WHERE sha256 IN ({marks}){small}",  # noqa: S608
                    chunk,
                )
                found.update((row["sha256"], bytes(row["data"])) for row in c.fetchall())
        return found


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
        # Bodies are compressed with lz4 rather than the default pglz: about five times less
        # CPU per message written, for a few percent more space. (PostgreSQL 14 and newer,
        # built with lz4; elsewhere, and while the table is busy, it stays as it is.)
        self.sql_create_statements.append(
            SQL(
                "DO $BODY$ DECLARE previous text := current_setting('lock_timeout'); BEGIN "
                "  IF (SELECT attcompression FROM pg_attribute WHERE attrelid = {name}::regclass"
                "      AND attname = 'data') <> 'l' THEN "
                "    PERFORM set_config('lock_timeout', '2s', true); "
                "    BEGIN "
                "      ALTER TABLE {table} ALTER COLUMN data SET COMPRESSION lz4; "
                "    EXCEPTION WHEN OTHERS THEN NULL; "
                "    END; "
                "    PERFORM set_config('lock_timeout', previous, true); "
                "  END IF; "
                "EXCEPTION WHEN OTHERS THEN NULL; "
                "END $BODY$"
            ).format(name=Literal(f'"{self.datastore.schema}"."{BLOB_TABLE}"'), table=table)
        )
        append = Identifier(self.datastore.schema, "postline_append")
        self.sql_create_statements.append(
            SQL(
                "CREATE OR REPLACE FUNCTION {append}(blob_ids text[], blob_data bytea[], "
                "ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $BODY$ "
                "BEGIN "
                "  INSERT INTO {blobs} (sha256, data) SELECT * FROM unnest(blob_ids, blob_data) "
                "    ON CONFLICT DO NOTHING; "
                "  SET LOCAL lock_timeout = '{lock_timeout}s'; "
                "  LOCK TABLE {events} IN EXCLUSIVE MODE; "
                "  PERFORM pg_notify({channel}, ''); "
                "  RETURN QUERY INSERT INTO {events} (originator_id, originator_version, topic, "
                "    state) SELECT * FROM unnest(ids, versions, topics, states) "
                "    RETURNING notification_id; "
                "END $BODY$"
            ).format(
                append=append,
                blobs=table,
                events=Identifier(self.datastore.schema, self.events_table_name),
                lock_timeout=self.datastore.lock_timeout,
                channel=Literal(self.channel_name),
            )
        )
        self._append = SQL("SELECT * FROM {}(%b, %b, %b, %b, %b, %b)").format(append)
        self._select_blobs = SQL(
            "SELECT sha256, data FROM {} WHERE sha256 = ANY(%s)"
            " AND (%s::integer IS NULL OR octet_length(data) <= %s::integer)"
        ).format(table)
        self._read_log = SQL(
            "SELECT notification_id, topic, state, originator_id, originator_version FROM {}"
            " WHERE notification_id > %s AND notification_id <= %s AND topic = ANY(%s)"
            " ORDER BY notification_id"
        ).format(Identifier(self.datastore.schema, self.events_table_name))

    # The library's versions are wrapped in a retry decorator (ten attempts, 0.2 s apart, each
    # waiting up to the connect timeout); these call the undecorated functions so a lost
    # database is reported at once and callers decide (answer 503, back off and poll again).
    select_events = PostgresApplicationRecorder.select_events.__wrapped__  # type: ignore[attr-defined]
    select_notifications = (
        PostgresApplicationRecorder.select_notifications.__wrapped__  # type: ignore[attr-defined]
    )
    max_notification_id = (
        PostgresApplicationRecorder.max_notification_id.__wrapped__  # type: ignore[attr-defined]
    )

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> list[int]:
        """Record blobs and events atomically; returns the events' notification ids."""
        blobs: Sequence[Blob] = kwargs.get("blobs", ())
        arguments = (
            [sha for sha, _ in blobs],
            [data for _, data in blobs],
            [e.originator_id for e in stored_events],
            [e.originator_version for e in stored_events],
            [e.topic for e in stored_events],
            [e.state for e in stored_events],
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._append, arguments)  # autocommit: one statement, one transaction
            return [row["postline_append"] for row in curs.fetchall()]

    def read_log(self, start: int, stop: int, topics: Sequence[str]) -> list[LogEntry]:
        """The notifications of `topics` after `start` up to `stop`, for a replay: rows as
        binary tuples, not a dict and a frozen dataclass each as `select_notifications` makes
        them (two thirds of its time, when a replay reads millions)."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as c:
            c.execute(self._read_log, (start, stop, list(topics)), binary=True)
            return list(map(LogEntry._make, c.fetchall()))

    def get_blobs(self, shas: Sequence[str], max_bytes: int | None = None) -> dict[str, bytes]:
        """The blobs found among `shas` (of at most `max_bytes` each), read with one
        statement."""
        with self.datastore.transaction(commit=False) as curs:
            # binary results: bytea as it is stored, not hex text to decode
            curs.execute(
                self._select_blobs,
                (list(dict.fromkeys(shas)), max_bytes, max_bytes),
                binary=True,
            )
            return {row["sha256"]: bytes(row["data"]) for row in curs.fetchall()}
