"""One writer at a time per SQLite file, across threads and processes, handed on at once.

SQLite lets one connection write a file at a time. A writer that finds it locked waits in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries however soon
the lock comes free: with the listener, the MTA and the dispatcher committing to one event
file from three processes, those sleeps were most of an accept's wait under load. Writers
queue on an `flock` of a companion file instead, so the kernel wakes the next one the moment
the lock is released. SQLite's own locking stays in force underneath (and its busy handler
for any writer that does not take this lock).
"""

import fcntl
import os
import threading
from types import TracebackType


class WriteLock:
    """Held around each write transaction on one SQLite file (no-op for `path` None)."""

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._mutex = threading.Lock()  # flock is per open file: threads queue here first
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._mutex.acquire()
        if self._path is None:
            return
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX)  # (blocks without holding the GIL)
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

    def _file(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:  # a forked process locks with its own file
            self._fd = os.open(self._path or "", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = pid
        return self._fd

    def close(self) -> None:
        with self._mutex:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


def lock_path(database: str) -> str | None:
    """The lock file of an SQLite database file (None for an in-memory database)."""
    if not database or ":memory:" in database or "mode=memory" in database:
        return None
    return f"{database}.write-lock"
