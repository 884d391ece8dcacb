"""One writer at a time per SQLite file, across threads and processes, handed on quickly.

SQLite lets one connection write a file at a time. A writer that finds it locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries however soon
the lock comes free: with the listener, the MTA and the dispatcher committing to one event
file from three processes, those sleeps were most of an accept's wait under load. Writers
take an `flock` of a companion file first, trying again every 20 µs to 0.5 ms, so the lock
changes hands within half a millisecond of its release. Like SQLite's own wait, it gives up
after `timeout` seconds (a writer stuck holding it must not hang every other writer):
OperationalError, which callers already answer with 503 / 451. SQLite's own locking stays in
force underneath.
"""

import fcntl
import os
import threading
import time
import weakref
from types import TracebackType

from eventsourcing.persistence import OperationalError

TIMEOUT_SECONDS = 10.0  # as SQLite's busy timeout here (SQLITE_LOCK_TIMEOUT)
_FIRST_PAUSE, _LONGEST_PAUSE = 0.00002, 0.0005

_all: "weakref.WeakSet[WriteLock]" = weakref.WeakSet()


class WriteLock:
    """Held around each write transaction on one SQLite file (no-op for `path` None)."""

    def __init__(self, path: str | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self._path = path
        self._timeout = timeout
        self._mutex = threading.Lock()  # flock is per open file: threads queue here first
        self._fd: int | None = None
        _all.add(self)

    def __enter__(self) -> None:
        deadline = time.monotonic() + self._timeout
        if not self._mutex.acquire(timeout=self._timeout):
            raise OperationalError(f"database is locked: {self._path}")
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fd = self._fd
            pause = _FIRST_PAUSE
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise OperationalError(f"database is locked: {self._path}") from None
                    time.sleep(pause)
                    pause = min(pause * 2, _LONGEST_PAUSE)
        except BaseException:
            self._mutex.release()
            raise

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None

    def _forked(self) -> None:
        """In a new child process: nothing of the parent's lock is kept (a copy of its file
        would keep the parent's flock held after the parent is gone)."""
        self._mutex = threading.Lock()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _after_fork_in_child() -> None:
    for lock in list(_all):
        lock._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def lock_path(database: str) -> str | None:
    """The lock file of an SQLite database file (None for an in-memory database)."""
    if not database or ":memory:" in database or "mode=memory" in database:
        return None
    return f"{database}.write-lock"
