"""Multi-row INSERT for SQLite.

Python's sqlite3 releases the GIL around every statement step, and `executemany` steps once
per row. A thread that inserts row by row while the event loop thread is busy waits for the GIL
after every row (up to the interpreter's switch interval each time), which stretches a 1 ms
transaction into tens of milliseconds while it holds the database's write lock. One
`INSERT ... VALUES (...), (...), ...` statement per chunk steps once.
"""

import sqlite3
from collections.abc import Sequence
from typing import Any

SQLITE_VARIABLE_LIMIT = sqlite3.connect(":memory:").getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
POSTGRES_PARAMETER_LIMIT = 65535


def insert_rows(
    cursor: Any,
    head: str,
    rows: Sequence[Sequence[Any]],
    tail: str = "",
    *,
    marker: str = "?",
    limit: int = SQLITE_VARIABLE_LIMIT,
) -> list[tuple[int, int]]:
    """Run `head VALUES (?, ...), ... tail` over `rows` in as few statements as `limit` allows.

    Returns `(lastrowid, rows inserted by the statement)` for each statement executed
    (`lastrowid` is meaningful on SQLite only).
    """
    if not rows:
        return []
    width = len(rows[0])
    per_statement = max(1, limit // width)
    placeholder = "(" + ", ".join([marker] * width) + ")"
    done = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = ", ".join([placeholder] * len(chunk))
        cursor.execute(f"{head} VALUES {values} {tail}", [value for row in chunk for value in row])
        done.append((cursor.lastrowid, len(chunk)))
    return done
