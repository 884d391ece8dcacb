"""Table swaps for read-model rebuilds: the DDL that differs between SQLite and PostgreSQL.

Names here are physical (after `SqlDatabase.renamed`), unqualified; PostgreSQL qualifies them
with the store's schema. Everything runs in the caller's transaction: both databases have
transactional DDL, so a swap is all or nothing.
"""

from collections.abc import Sequence
from typing import Any

from adapters.sql import SqlDatabase


def _qualified(db: SqlDatabase, name: str) -> str:
    return f'"{db.schema}"."{name}"' if db.dialect == "postgres" else f'"{name}"'


def drop_table(db: SqlDatabase, cursor: Any, name: str) -> None:
    """Drop a table (and its indexes) if it is there."""
    cursor.execute(f"DROP TABLE IF EXISTS {_qualified(db, name)}")


def rename_table(db: SqlDatabase, cursor: Any, name: str, to: str) -> None:
    cursor.execute(f'ALTER TABLE {_qualified(db, name)} RENAME TO "{to}"')


def indexes(db: SqlDatabase, cursor: Any, table: str) -> list[str]:
    """The names of a table's indexes, constraints' included (SQLite's automatic ones
    excepted: they follow their table)."""
    if db.dialect == "postgres":
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (db.schema, table),
        )
        return [row["indexname"] for row in cursor.fetchall()]
    cursor.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?"
        " AND name NOT LIKE 'sqlite_autoindex_%'",
        (table,),
    )
    return [row["name"] for row in cursor.fetchall()]


def rename_index(db: SqlDatabase, cursor: Any, name: str, to: str) -> None:
    """PostgreSQL only (SQLite cannot rename an index: drop it and create it again)."""
    cursor.execute(f'ALTER INDEX {_qualified(db, name)} RENAME TO "{to}"')


def lock_tables(db: SqlDatabase, cursor: Any, names: Sequence[str]) -> None:
    """Take the tables for this transaction alone: no reads, no writes (PostgreSQL; an SQLite
    writer holds the whole file already, and readers keep their snapshot)."""
    if db.dialect == "postgres" and names:
        tables = ", ".join(_qualified(db, name) for name in names)
        cursor.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")


def wait_at_most(db: SqlDatabase, cursor: Any, timeout: float) -> None:
    """Give up on any lock of this transaction not granted within `timeout` seconds
    (PostgreSQL; SQLite's writers wait for the file's lock as they are configured to)."""
    if db.dialect == "postgres":
        cursor.execute(f"SET LOCAL lock_timeout = '{int(timeout * 1000)}ms'")


def relax_durability(db: SqlDatabase, cursor: Any) -> None:
    """This transaction need not wait for its WAL to reach the disk (PostgreSQL): for rows that
    can be rebuilt from the log anyway. SQLite's read-model file is written this way already."""
    if db.dialect == "postgres":
        cursor.execute("SET LOCAL synchronous_commit = off")


def analyze(db: SqlDatabase, cursor: Any, name: str) -> None:
    """Give the planner statistics of a table loaded in bulk before queries plan against it
    (PostgreSQL; SQLite plans without them)."""
    if db.dialect == "postgres":
        cursor.execute(f"ANALYZE {_qualified(db, name)}")
