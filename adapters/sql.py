"""A thin SQL facade for read models.

On PostgreSQL read models live in the event store's schema and use its connection pool. On
SQLite they live in a second file next to the events (`postline.db` -> `postline-views.db`):
SQLite has one writer at a time per file, and the projector's writes must not hold up the
accept path's commits. Statements are written once with `?` placeholders and `{name}` markers,
and prepared for the dialect: `{table}` becomes a schema-qualified name on PostgreSQL, `{ts}` a
timestamp type, `{for_update}` a row lock where the database has one. Index names are markers
too, `{index:name}` (PostgreSQL wants them unqualified, SQLite's are global to the file), so a
rebuild can create a read model's tables and indexes under other names (`renamed`) beside the
live ones and swap them in (projections.replay).
"""

import contextlib
import copy
import re
import sqlite3
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError, OperationalError, PersistenceError
from eventsourcing.sqlite import SQLiteDatastore

from adapters.eventstore import PostgresEventStore, SQLiteEventStore
from adapters.multirow import insert_rows
from adapters.write_lock import WriteLock, lock_path

_MARKER = re.compile(r"\{([a-z_]+(?::[a-z0-9_]+)?)\}")
INDEX = "index:"  # `{index:name}`: an index name

_TYPES = {
    "sqlite": {"ts": "TEXT", "for_update": "", "bigint": "INTEGER"},
    "postgres": {"ts": "TIMESTAMPTZ", "for_update": "FOR UPDATE", "bigint": "BIGINT"},
}


class SqlDatabase:
    """Run read-model SQL in the event store's database."""

    def __init__(self, recorder: SQLiteEventStore | PostgresEventStore) -> None:
        self.datastore: Any
        if isinstance(recorder, PostgresEventStore):
            self.dialect = "postgres"
            self.schema = recorder.datastore.schema
            self.datastore = recorder.datastore
        else:
            self.dialect = "sqlite"
            self.schema = ""
            path = views_path(recorder.datastore.pool.db_name)
            self.datastore = SQLiteDatastore(path, lock_timeout=10)
            self._write_lock = WriteLock(lock_path(path))
        self._tuned: weakref.WeakSet[Any] = weakref.WeakSet()
        self.names: dict[str, str] = {}  # marker -> the table or index it stands for
        self.bulk = False  # loading tables nobody else writes (see `insert`)

    def renamed(self, names: dict[str, str], *, bulk: bool = False) -> "SqlDatabase":
        """The same database, where the markers in `names` (`table`, `index:name`) stand for
        other tables and indexes: a rebuild's fresh ones, loaded in `bulk`."""
        view = copy.copy(self)
        view.names = {**self.names, **names}
        view.bulk = bulk
        return view

    def close(self) -> None:
        if self.dialect == "sqlite":
            self.datastore.close()
            self._write_lock.close()

    def prepare(self, statement: str) -> str:
        """Adapt a statement written with `?` and `{markers}` to this database."""
        types = _TYPES[self.dialect]

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in types:
                return types[name]
            if name.startswith(INDEX):
                return self.names.get(name, name[len(INDEX) :])
            name = self.names.get(name, name)
            return f'"{self.schema}"."{name}"' if self.schema else name

        prepared = _MARKER.sub(replace, statement)
        return prepared.replace("?", "%s") if self.dialect == "postgres" else prepared

    @contextmanager
    def transaction(self, *, commit: bool = True) -> Iterator[Any]:
        """A cursor in a transaction; committed on success when `commit`, else rolled back."""
        if self.dialect == "sqlite":
            writing = self._write_lock if commit else contextlib.nullcontext()
            with writing, self._sqlite_transaction(commit) as cursor:
                yield cursor
            return
        with self.datastore.transaction(commit=commit) as cursor:
            yield cursor

    @contextmanager
    def _sqlite_transaction(self, commit: bool) -> Iterator[Any]:
        """As the library's SQLite transaction, but a writer takes the write lock up front.

        The library begins every transaction DEFERRED: one that reads, then writes, fails at
        once with "database is locked" if another process wrote in between (its snapshot is
        stale, so SQLite cannot wait for the lock). BEGIN IMMEDIATE waits for the lock
        instead. Read models can be rebuilt from the log, so their file is written with
        `synchronous=NORMAL` (consistent, not fsynced at every commit).
        """
        try:
            with self.datastore.get_connection(commit=commit) as connection:
                cursor = connection.cursor()
                if connection not in self._tuned:
                    cursor.execute("PRAGMA synchronous=NORMAL")
                    self._tuned.add(connection)
                cursor.execute("BEGIN IMMEDIATE" if commit else "BEGIN")
                try:
                    yield cursor
                except BaseException:
                    connection.rollback()
                    raise
                finally:
                    cursor.sqlite_cursor.close()
                if commit:
                    connection.commit()
                else:
                    connection.rollback()
        except sqlite3.IntegrityError as error:
            raise IntegrityError(error) from error
        except sqlite3.OperationalError as error:
            raise OperationalError(error) from error
        except sqlite3.Error as error:
            raise PersistenceError(error) from error

    def insert(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[tuple[str, str]],
        rows: Sequence[Sequence[Any]],
        tail: str = "",
    ) -> None:
        """Insert `rows` into `{table}`; `columns` are `(name, SQL type)` pairs.

        SQLite: multi-row VALUES statements (see adapters.multirow). PostgreSQL: one statement
        over typed arrays (`unnest`), which psycopg sends in binary from C; row-by-row
        `executemany` spends ~80 us of Python per row. `tail` (e.g. ON CONFLICT) uses markers.
        In `bulk`, PostgreSQL gets a COPY first (rows formatted in C, no arrays to take apart:
        about 3 times faster), which does what the statement would as long as no row clashes
        with one there; if one does, the COPY is rolled back and the statement runs instead.
        """
        if not rows:
            return
        names = ", ".join(name for name, _ in columns)
        if self.dialect == "sqlite":
            head = self.prepare(f"INSERT INTO {{{table}}} ({names})")
            insert_rows(cursor.sqlite_cursor, head, rows, self.prepare(tail))
            return
        if self.bulk and self._copy(cursor, table, names, rows):
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        statement = self.prepare(
            f"INSERT INTO {{{table}}} ({names}) SELECT * FROM unnest({arrays}) {tail}"  # noqa: S608
        )
        cursor.execute(statement, [list(column) for column in zip(*rows, strict=True)])

    def _copy(self, cursor: Any, table: str, names: str, rows: Sequence[Sequence[Any]]) -> bool:
        """COPY `rows` into `{table}` (PostgreSQL), unless one clashes with a row there."""
        statement = self.prepare(f"COPY {{{table}}} ({names}) FROM STDIN")
        try:
            with cursor.connection.transaction(), cursor.copy(statement) as copy:  # a savepoint
                for row in rows:
                    copy.write_row(row)
        except psycopg.errors.UniqueViolation:
            return False
        return True

    def one_of(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` equal to one of `values`, as a condition written with `?` and its
        parameters: an array on PostgreSQL (one plan, whatever the count), a list of
        parameters on SQLite (at most SQLITE_VARIABLE_LIMIT of them)."""
        if self.dialect == "postgres":
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def execute_each(
        self,
        cursor: Any,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[tuple[str, str]],
        *,
        sqlite: str,
        postgres: str,
    ) -> None:
        """Apply a statement to each row, in one statement on PostgreSQL.

        SQLite runs `sqlite` (one `?` per column, in order) once per row, in process.
        PostgreSQL runs `postgres` once, where `{rows}` stands for the rows as a table `v` with
        `columns` (`(name, SQL type)` pairs), sent as typed arrays: one round trip and one plan
        instead of one per row.
        """
        if not rows:
            return
        if self.dialect == "sqlite":
            cursor.executemany(self.prepare(sqlite), rows)
            return
        arrays = ", ".join(f"%b::{kind}[]" for _, kind in columns)
        names = ", ".join(name for name, _ in columns)
        statement = self.prepare(postgres.replace("{rows}", "__rows__")).replace(
            "__rows__", f"unnest({arrays}) AS v({names})"
        )
        cursor.execute(statement, [list(column) for column in zip(*rows, strict=True)])


def views_path(events_path: str) -> str:
    """The read-model file that goes with an SQLite event store file."""
    stem, dot, suffix = events_path.rpartition(".")
    return f"{stem}-views.{suffix}" if dot and "/" not in suffix else f"{events_path}-views"
