"""One writer at a time per SQLite file (adapters.write_lock), across processes and threads."""

import multiprocessing
import threading
import time
from pathlib import Path

from adapters.write_lock import WriteLock, lock_path


def hold_for_a_while(path: str, marks: str, ready: "multiprocessing.synchronize.Event") -> None:
    lock = WriteLock(path)
    with lock:
        ready.set()
        time.sleep(0.3)
        Path(marks).write_text("released")


def test_a_writer_in_another_process_waits_for_the_lock(tmp_path: Path) -> None:
    path, marks = str(tmp_path / "db.write-lock"), str(tmp_path / "marks")
    lock = WriteLock(path)
    with lock:  # this process opened the file before forking: the child must lock its own
        pass
    fork = multiprocessing.get_context("fork")
    ready = fork.Event()
    child = fork.Process(target=hold_for_a_while, args=(path, marks, ready))
    child.start()
    try:
        assert ready.wait(10)
        with lock:
            seen = Path(marks).read_text() if Path(marks).exists() else "not yet"
    finally:
        child.join(10)
    assert seen == "released"
    lock.close()


def test_threads_of_one_process_take_turns(tmp_path: Path) -> None:
    lock = WriteLock(str(tmp_path / "db.write-lock"))
    inside: list[int] = []
    overlaps: list[int] = []

    def write(n: int) -> None:
        for _ in range(20):
            with lock:
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    lock.close()


def test_in_memory_databases_have_no_lock_file() -> None:
    assert lock_path(":memory:") is None
    assert lock_path("file:x?mode=memory&cache=shared") is None
    assert lock_path("/data/postline.db") == "/data/postline.db.write-lock"
