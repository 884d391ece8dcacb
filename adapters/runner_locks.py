"""One runner per read model on PostgreSQL: session-level advisory locks.

Each process that runs projections asks for one lock per read model (and process follower)
on a connection of its own; the holder runs it, the others stand by and try again now and
then, so a runner that dies (its connection closes, the lock goes with it) is replaced within
seconds. Running a read model in two processes would still be correct (a projector whose
position moved under it rereads), only wasteful. SQLite installations are one host: every
process simply runs its read models.
"""

import contextlib
import logging
import threading
import time

import psycopg

from adapters.database import StoreUrl

log = logging.getLogger("postline.projections")
RECHECK_SECONDS = 1.0  # how often a held lock's connection is proved alive


class RunnerLocks:
    """The advisory locks this process holds, by read-model name."""

    def __init__(self, store: StoreUrl) -> None:
        self._store = store
        self._connection: psycopg.Connection | None = None
        self._held: set[str] = set()
        self._mutex = threading.Lock()
        self._checked_at = 0.0

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    def hold(self, name: str) -> bool:
        """Whether this process runs `name`: it holds the lock, or has just taken it."""
        if self._store.dialect != "postgres":
            return True
        with self._mutex:
            if name in self._held and time.monotonic() - self._checked_at < RECHECK_SECONDS:
                return True
            try:
                connection = self._connect()
                if name in self._held:
                    connection.execute("SELECT 1")  # still connected, so still holding it
                    self._checked_at = time.monotonic()
                    return True
                row = connection.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                    (f"postline-runner:{self._store.schema}:{name}",),
                ).fetchone()
            except psycopg.Error as error:
                log.warning("runner locks lost: %s", error)
                self._drop()
                return False
            if row is not None and row[0]:
                self._held.add(name)
                return True
            return False

    def close(self) -> None:
        with self._mutex:
            self._drop()

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._held.clear()  # a new session holds nothing
            self._connection = psycopg.connect(
                host=self._store.host,
                port=self._store.port,
                user=self._store.user,
                password=self._store.password,
                dbname=self._store.dbname,
                connect_timeout=3,
                autocommit=True,
            )
        return self._connection

    def _drop(self) -> None:
        self._held.clear()
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None
