"""One writer at a time per SQLite file (adapters.write_lock), across processes and threads."""

import multiprocessing
import threading
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from eventsourcing.persistence import OperationalError

from adapters.write_lock import WriteLock, lock_path

FORK = multiprocessing.get_context("fork")


def hold(lock: WriteLock, seconds: float, marks: str, ready: Event) -> None:
    with lock:
        ready.set()
        time.sleep(seconds)
        Path(marks).write_text("released")


def held_elsewhere(lock: WriteLock, seconds: float, marks: str) -> "multiprocessing.Process":
    """A forked process holding `lock` (the parent's own object) for `seconds`."""
    ready = FORK.Event()
    child = FORK.Process(target=hold, args=(lock, seconds, marks, ready))
    child.start()
    assert ready.wait(10)
    return child


def test_a_writer_in_another_process_waits_for_the_lock(tmp_path: Path) -> None:
    marks = str(tmp_path / "marks")
    lock = WriteLock(str(tmp_path / "db.write-lock"))
    with lock:  # opened here before the fork: the child must not share this process's lock
        pass
    child = held_elsewhere(lock, 0.3, marks)
    try:
        with lock:
            seen = Path(marks).read_text() if Path(marks).exists() else "not yet"
    finally:
        child.join(10)
    assert child.exitcode == 0
    assert seen == "released"
    lock.close()


def test_a_writer_gives_up_after_its_timeout(tmp_path: Path) -> None:
    lock = WriteLock(str(tmp_path / "db.write-lock"), timeout=0.2)
    child = held_elsewhere(lock, 2.0, str(tmp_path / "marks"))
    try:
        with pytest.raises(OperationalError, match="database is locked"), lock:
            pass
        assert child.is_alive()  # it still holds the lock: this one gave up
    finally:
        child.join(10)
    with lock:  # and the lock is usable again once the holder is done
        pass
    lock.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = WriteLock(str(tmp_path / "db.write-lock"))
    inside: list[int] = []
    overlaps: list[int] = []
    turns: list[int] = []

    def write(n: int) -> None:
        for _ in range(20):
            with lock:
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)
                turns.append(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    assert len(turns) == 80
    assert overlaps == []
    lock.close()


def test_in_memory_databases_have_no_lock_file() -> None:
    assert lock_path(":memory:") is None
    assert lock_path("file:x?mode=memory&cache=shared") is None
    assert lock_path("/data/postline.db") == "/data/postline.db.write-lock"
