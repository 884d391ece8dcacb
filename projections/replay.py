"""Rebuild read models from the log into fresh tables, swapped in at the end (`postline replay`).

The live tables keep serving (the API reads them, their projector keeps them up to date) while
the rebuild runs:

1. Fresh tables: each read model's DDL runs with its table and index markers renamed
   (`email_logs` -> `email_logs__next`, see `SqlDatabase.renamed`), under a position of their
   own (`email_logs__next` in the positions table). Leftovers of an interrupted rebuild are
   dropped first.
2. Load: one pass over the log for every read model being rebuilt: each batch of
   notifications is read and decoded once, and each read model applies its events to its
   fresh tables with its unchanged `apply` (inserts become COPYs: `SqlDatabase.bulk`), in a
   transaction per batch that also moves its fresh position. Secondary indexes are built
   after the load (faster than row by row), then what the log gained meanwhile is loaded.
3. Swap, one transaction per read model: lock the live position row (the live projector's
   `_write` takes that lock first, so it can neither be half-way through a batch nor start
   one), apply what the log gained since the load to the fresh tables, take the live tables
   (PostgreSQL: ACCESS EXCLUSIVE, waiting at most SWAP_LOCK_SECONDS), let the read model
   carry over what the log does not hold (`carry_over`: the delivery queue's leases), drop
   the live tables, rename the fresh ones (and their indexes) to the live names, and set the
   live position to where the fresh tables are. A lock not granted in time, or a deadlock with
   a reader, rolls the swap back; it is tried again.

After the swap the live projector finds the position moved under it, drops its batch and
reads on from the new position: statements name tables, not table ids, so they reach the new
tables (PostgreSQL resolves a name again when a lock it waited for was on a dropped table;
SQLite re-prepares statements whose schema changed). Readers see the old rows until the swap
commits and the new ones after.

Two rebuilds of one read model at the same time cannot both swap: each checks, in every
transaction, that the fresh position is still where it left it (`ReplayConflict` otherwise).
An interrupted rebuild leaves its fresh tables behind, unused; the next one drops them.

The delivery queue is rebuilt too: its rows are the log's, except the workers' leases, which
its `carry_over` keeps (a rebuild that dropped them would let a second worker claim a message
being delivered).
"""

import contextlib
import gc
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty, Queue
from typing import Any, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import OperationalError

from adapters import tables
from adapters.sql import INDEX
from projections.runner import Projection, Projector

log = logging.getLogger("postline.projections")

FRESH = "__next"  # suffix of the fresh tables, indexes and position of a rebuild
BATCH = 20000  # log positions (notification ids) per batch
APPLIERS = 4  # threads applying batches (PostgreSQL), each with a connection
SWAP_LOCK_SECONDS = 2.0  # longest wait for a lock in the swap before trying again
SWAP_ATTEMPTS = 20
T = TypeVar("T")
_INDEX_MARKER = re.compile(r"\{" + INDEX + r"([a-z0-9_]+)\}")


class ReplayConflict(RuntimeError):
    """Another rebuild of the same read model took its fresh tables over."""


def fresh_names(projection: Projection) -> dict[str, str]:
    """The markers of a read model's tables and indexes -> the names its rebuild uses."""
    names = {table: table + FRESH for table in projection.tables}
    for statement in projection.schema():
        for index in _INDEX_MARKER.findall(statement):
            names[INDEX + index] = index + FRESH
    return names


class Rebuild:
    """One read model's rebuild: its fresh tables and how far they have followed the log."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        self.projection = projector.projection
        self.name = self.projection.name
        self.live = projector.db
        self.fresh = projector.db.renamed(fresh_names(self.projection), bulk=True)
        self.position_name = self.name + FRESH
        self.position = 0  # how far the fresh tables reflect the log
        self.stored = 0  # the fresh position as stored (behind while nothing of interest came)
        self.events = 0  # applied to the fresh tables
        db = self.live
        self._select = db.prepare(
            "SELECT position FROM {projection_positions} WHERE name = ? {for_update}"
        )
        self._update = db.prepare("UPDATE {projection_positions} SET position = ? WHERE name = ?")
        self._delete = db.prepare("DELETE FROM {projection_positions} WHERE name = ?")

    def create(self) -> None:
        """Empty fresh tables (indexes come after the load) at position 0."""
        db = self.live
        with db.transaction() as cursor:
            for table in self.projection.tables:
                tables.drop_table(db, cursor, table + FRESH)
            for statement in self.projection.schema():
                if not _INDEX_MARKER.search(statement):
                    cursor.execute(self.fresh.prepare(statement))
            cursor.execute(self._delete, (self.position_name,))
            cursor.execute(
                db.prepare("INSERT INTO {projection_positions} (name, position) VALUES (?, 0)"),
                (self.position_name,),
            )
        self.position = self.stored = self.events = 0

    def step(self, batch: "Batch") -> None:
        """One batch of the load, in a transaction of its own; a batch with nothing of
        interest only moves the position in memory (written with the next one that has)."""
        mine = self._mine(batch)
        if not mine:
            self.position = batch.end
            return
        with self.live.transaction() as cursor:
            tables.relax_durability(self.live, cursor)
            self.write(cursor, mine, batch.end)

    def flush(self) -> None:
        """Write down how far the load went (see `step`)."""
        if self.stored != self.position:
            with self.live.transaction() as cursor:
                self.write(cursor, [], self.position)

    def write(self, cursor: Any, events: list[tuple[int, Any]], end: int) -> None:
        """Apply `events` (of its topics, past the fresh position) and move the position to
        `end`, unless another rebuild has taken the fresh tables over."""
        self.check(cursor)
        if events:
            self.projection.apply(self.fresh, cursor, events)
        cursor.execute(self._update, (end, self.position_name))
        self.position = self.stored = end
        self.events += len(events)

    def check(self, cursor: Any) -> None:
        """Lock the fresh position; ReplayConflict unless it is where this rebuild left it."""
        cursor.execute(self._select, (self.position_name,))
        row = cursor.fetchone()
        if row is None or int(row["position"]) != self.stored:
            raise ReplayConflict(f"{self.name}: another replay of this read model is running")

    def _mine(self, batch: "Batch") -> list[tuple[int, Any]]:
        """The batch's events this read model has not seen and follows."""
        topics, position = self.projection.topics, self.position
        if batch.present.isdisjoint(topics) or batch.end <= position:
            return []
        if batch.present <= topics and batch.events[0][0] > position:
            return batch.events  # (most batches of the busiest read models)
        return [
            pair
            for pair, topic in zip(batch.events, batch.topics, strict=True)
            if pair[0] > position and topic in topics
        ]

    def index(self) -> None:
        """PostgreSQL: build the fresh tables' indexes under their fresh names and analyze
        the tables. SQLite cannot rename an index, so it builds them at the swap."""
        db = self.live
        if db.dialect != "postgres":
            return
        with db.transaction() as cursor:
            for statement in self.projection.schema():
                if _INDEX_MARKER.search(statement):
                    cursor.execute(self.fresh.prepare(statement))
            for table in self.projection.tables:
                tables.analyze(db, cursor, table + FRESH)

    def swap(self, app: Application[Any], batch_size: int) -> int:
        """Bring the fresh tables up to the log's head and put them in place of the live ones,
        in one transaction (tried again if a lock is not granted in time); returns the log
        position they reflect."""
        for attempt in range(1, SWAP_ATTEMPTS + 1):
            before = self.position, self.stored, self.events
            try:
                with self.live.transaction() as cursor:
                    self._swap(app, cursor, batch_size)
                return self.position
            except OperationalError as error:  # a lock timeout, or a deadlock with a reader
                self.position, self.stored, self.events = before  # rolled back
                if attempt == SWAP_ATTEMPTS:
                    raise
                log.info("replay of %s: swap tried again (%s)", self.name, error)
                time.sleep(min(0.1 * attempt, 1.0))
        raise AssertionError("unreachable")

    def _swap(self, app: Application[Any], cursor: Any, batch_size: int) -> None:
        db = self.live
        tables.wait_at_most(db, cursor, SWAP_LOCK_SECONDS)
        cursor.execute(self._select, (self.name,))  # the live projector waits from here on
        if cursor.fetchone() is None:
            raise ReplayConflict(f"{self.name}: the read model has no position")
        self.check(cursor)
        head = app.recorder.max_notification_id() or 0
        for batch in read(app, self.position, head, self.projection.topics, batch_size):
            self.write(cursor, self._mine(batch), batch.end)
        live = self.projection.tables
        tables.lock_tables(db, cursor, live)
        carry_over = getattr(self.projection, "carry_over", None)
        if carry_over is not None:
            carry_over(db, self.fresh, cursor)
        for table in live:
            tables.drop_table(db, cursor, table)
            tables.rename_table(db, cursor, table + FRESH, table)
        if db.dialect == "postgres":
            for table in live:
                for index in tables.indexes(db, cursor, table):
                    if index.endswith(FRESH):
                        tables.rename_index(db, cursor, index, index[: -len(FRESH)])
                    elif index.startswith(table + FRESH):  # primary keys, unique constraints
                        tables.rename_index(db, cursor, index, table + index[len(table + FRESH) :])
        else:
            for statement in self.projection.schema():
                if _INDEX_MARKER.search(statement):
                    cursor.execute(db.prepare(statement))
        cursor.execute(self._update, (self.position, self.name))
        cursor.execute(self._delete, (self.position_name,))


@dataclass(frozen=True, slots=True)
class Batch:
    """Events of the log up to `end` (a position), decoded once for every read model."""

    events: list[tuple[int, Any]]  # (notification id, domain event)
    topics: list[str]  # each one's topic
    present: frozenset[str]
    end: int


def read(
    app: Application[Any], start: int, head: int, topics: Iterable[str], batch_size: int
) -> Iterable[Batch]:
    """The log after `start` up to `head`, in batches of the events of `topics`.

    Each batch is a window of `batch_size` ids: asked for everything of some topics up to a
    far head, PostgreSQL may plan a scan of the whole rest of the log (and a sort) for every
    batch, which made a long replay quadratic.
    """
    wanted = sorted(topics)
    to_domain_event = app.mapper.to_domain_event
    while start < head:
        end = min(head, start + batch_size)
        notifications = app.recorder.read_log(start, end, wanted)
        kinds = [n.topic for n in notifications]
        events = [(n.id, to_domain_event(n)) for n in notifications]
        yield Batch(events, kinds, frozenset(kinds), end)
        start = end


def ahead(batches: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """`batches`, read in a thread of their own up to `depth` ahead of the caller: the next
    batch is read and decoded while the database applies the last one."""
    queue: Queue[tuple[T | None, BaseException | None, bool]] = Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                queue.put((batch, None, False))
        except BaseException as error:  # handed to the caller
            queue.put((None, error, True))
            return
        queue.put((None, None, True))

    reader = threading.Thread(target=produce, name="postline-replay-read", daemon=True)
    reader.start()
    try:
        while True:
            batch, error, done = queue.get()
            if error is not None:
                raise error
            if done:
                return
            yield batch  # type: ignore[misc]
    finally:
        stop.set()
        while reader.is_alive():  # make room for a reader waiting to put a batch
            with contextlib.suppress(Empty):
                queue.get_nowait()
            reader.join(0.01)


def load(
    rebuilds: Sequence[Rebuild],
    head: int,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
) -> None:
    """Project the log up to `head` into the fresh tables: one pass over the log for all of
    them, each batch read and decoded once (in a thread of its own, ahead of the rest). On
    PostgreSQL the read models apply their batches in up to APPLIERS threads, each batch in a
    transaction of its own, so the database works on one while Python prepares another;
    SQLite has one writer at a time anyway."""
    if not rebuilds:
        return
    app = rebuilds[0].projector.app
    topics = frozenset().union(*(r.projection.topics for r in rebuilds))
    start = min(r.position for r in rebuilds)
    threads = min(len(rebuilds), APPLIERS) if rebuilds[0].live.dialect == "postgres" else 1
    appliers = [ThreadPoolExecutor(1, "postline-replay-apply") for _ in range(threads)]
    pending: deque[tuple[int, list[Future[None]]]] = deque()
    batches = ahead(read(app, start, head, topics, batch_size))
    collecting = gc.isenabled()
    # Millions of short-lived objects, none in a cycle: the cyclic collector, run every 700
    # allocations and over everything alive every 100 runs, took a third of a replay's time.
    gc.disable()
    try:
        for batch in batches:
            steps = [appliers[n % threads].submit(r.step, batch) for n, r in enumerate(rebuilds)]
            pending.append((batch.end, steps))
            while len(pending) > 1:  # the next batch is being applied meanwhile
                _finish(pending.popleft(), progress)
        while pending:
            _finish(pending.popleft(), progress)
    finally:
        if collecting:
            gc.enable()
        batches.close()
        for applier in appliers:
            applier.shutdown(cancel_futures=True)
    for rebuild_ in rebuilds:
        rebuild_.flush()


def _finish(batch: tuple[int, list[Future[None]]], progress: Callable[[int], None] | None) -> None:
    end, futures = batch
    for future in futures:
        future.result()
    if progress is not None:
        progress(end)


def rebuild(
    projectors: Sequence[Projector],
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
) -> dict[str, int]:
    """Rebuild the read models of `projectors` (one application, one database) from the whole
    log while the live ones keep serving; returns the events each one applied."""
    rebuilds = [Rebuild(projector) for projector in projectors]
    if not rebuilds:
        return {}
    app = rebuilds[0].projector.app
    for rebuild_ in rebuilds:
        rebuild_.create()
    load(rebuilds, app.recorder.max_notification_id() or 0, progress, batch_size)
    for rebuild_ in rebuilds:
        rebuild_.index()
    # What the log gained during the load, applied before the swaps lock anything.
    load(rebuilds, app.recorder.max_notification_id() or 0, None, batch_size)
    for rebuild_ in rebuilds:
        rebuild_.swap(app, batch_size)
    return {r.name: r.events for r in rebuilds}
