"""Follow the notification log and keep read models up to date, exactly once.

One mechanism for both stores: poll `select_notifications` after the last position, apply the
events to the read model and move the position in the same transaction. A projector that finds
the position moved under it (another process got there first) drops its batch and rereads, so
running a projector in several processes is safe. Positions are notification ids, which may
have gaps; only "the last one seen" is ever assumed.

The store filters by topic, up to the log's head read just before: a batch that comes back
short means nothing else of interest lies up to that head, so the position moves there. A
stretch with nothing of interest is written down at most every `idle_write` seconds while the
log grows (and at once when it stops), not once per batch: most read models follow few of
the events the delivery path writes.
"""

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Notification, PersistenceError

from adapters.sql import SqlDatabase

log = logging.getLogger("postline.projections")

IDLE_WRITE_SECONDS = 0.1
FAILED_RETRY_SECONDS = 5.0  # a read model whose batch failed sits out this long in its group
POSITIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS {projection_positions} "
    "(name TEXT PRIMARY KEY, position {bigint} NOT NULL)"
)


class Projection(Protocol):
    """A read model: its tables and how events change them.

    A rebuild (projections.replay) runs `schema()` and `apply()` against fresh tables: both
    name tables only by their `{table}` markers, and indexes by `{index:name}` markers (one
    statement per index). A read model holding state that is not in the log may define
    `carry_over(live, fresh, cursor)`, called in the swap to copy it into the fresh tables.
    """

    name: str
    topics: frozenset[str]  # event topics it reads
    tables: tuple[str, ...]  # its tables, replaced by a rebuild

    def schema(self) -> Iterable[str]:
        """DDL statements (written for `SqlDatabase.prepare`), idempotent."""
        ...

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        """Apply `(notification_id, domain_event)` pairs inside the caller's transaction."""
        ...


class Projector:
    """Runs one projection over the log of one application."""

    def __init__(
        self, app: Application[Any], db: SqlDatabase, projection: Projection, batch_size: int = 500
    ) -> None:
        self.app = app
        self.db = db
        self.projection = projection
        self.batch_size = batch_size
        self._select_position = db.prepare(
            "SELECT position FROM {projection_positions} WHERE name = ? {for_update}"
        )
        self._insert_position = db.prepare(
            "INSERT INTO {projection_positions} (name, position) VALUES (?, 0) "
            "ON CONFLICT (name) DO NOTHING"
        )
        self._update_position = db.prepare(
            "UPDATE {projection_positions} SET position = ? WHERE name = ?"
        )
        self._topics = sorted(projection.topics)
        self._seen = 0  # read up to here, nothing of interest past the stored position
        self.idle_write = IDLE_WRITE_SECONDS
        self._written_at = 0.0
        self._retry_at = 0.0  # (in a group) after a failed batch, not before this

    def create_schema(self) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(self.db.prepare(POSITIONS_DDL))
            for statement in self.projection.schema():
                cursor.execute(self.db.prepare(statement))
            cursor.execute(self._insert_position, (self.projection.name,))

    def position(self) -> int:
        with self.db.transaction(commit=False) as cursor:
            cursor.execute(self._select_position.replace("FOR UPDATE", ""), (self.projection.name,))
            row = cursor.fetchone()
        return 0 if row is None else int(row["position"])

    def run_once(self) -> int:
        """Apply the next batch of events; returns how far the position moved (in ids)."""
        stored = self.position()
        start = max(stored, self._seen)
        head = self.app.recorder.max_notification_id() or 0
        if head <= start:
            if stored < start:  # the log stopped growing: write down what was skipped
                self._write(stored, start, [])
            return 0
        topics = self._topics_now()
        notifications, end = read_batch(self.app, start, head, topics, self.batch_size)
        if topics is not self._topics:  # narrowed: stop after an event that may widen them
            widening = self.projection.widening_topics  # type: ignore[attr-defined]
            for index, notification in enumerate(notifications):
                if notification.topic in widening:
                    notifications, end = notifications[: index + 1], notification.id
                    break
        if not notifications and time.monotonic() - self._written_at < self.idle_write:
            self._seen = end
            return end - start
        to_domain_event = self.app.mapper.to_domain_event
        events = [(n.id, to_domain_event(n)) for n in notifications]
        return end - start if self._write(stored, end, events) else 0

    def _topics_now(self) -> list[str]:
        """The topics to read now: a read model may follow fewer while what it holds says
        the rest would change nothing (`narrowed_topics(db)`, None for all of them)."""
        narrowed = getattr(self.projection, "narrowed_topics", None)
        topics = None if narrowed is None else narrowed(self.db)
        return self._topics if topics is None else sorted(topics)

    def _write(self, stored: int, end: int, events: list[tuple[int, Any]]) -> bool:
        """Apply `events` and move the position from `stored` to `end`, unless another process
        moved it first (then start over from where it is)."""
        with self.db.transaction() as cursor:
            cursor.execute(self._select_position, (self.projection.name,))
            row = cursor.fetchone()
            if row is None or int(row["position"]) != stored:
                self._seen = 0
                return False  # another projector moved on; reread from its position
            self.projection.apply(self.db, cursor, events)
            cursor.execute(self._update_position, (end, self.projection.name))
        self._seen = end
        self._written_at = time.monotonic()
        return True

    def catch_up(self, progress: Callable[[int], None] | None = None) -> int:
        """Run until the read model has seen the whole log as it was at the call; returns
        notifications consumed (by this call: another process may have applied some)."""
        head = self.app.recorder.max_notification_id() or 0
        total = 0
        while True:
            consumed = self.run_once()
            total += consumed
            if consumed and progress is not None:
                progress(self.position())
            # Nothing consumed: either the end, or another process moved the position under
            # this one (a batch it read before the last commits): then read on from there.
            if not consumed and self.position() >= head:
                return total

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Project the whole log into fresh tables and swap them in (projections.replay);
        returns the events applied."""
        from projections.replay import rebuild  # (it builds on this module)

        return rebuild([self], progress)[self.projection.name]

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the read model has reached `position` (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self.position() < position:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True


class ProjectorGroup:
    """Read models of one database that follow the log together.

    Each batch of the log is read and decoded once for all of them and applied in one
    transaction that moves every member's position: one write lock and one commit per batch
    instead of one per read model (on SQLite every read model shares one views file, so their
    separate transactions queued behind each other). Members stay independent where it
    matters: each keeps its own position and only ever gets events past it, a member whose
    position another process moved sits the batch out and rereads, and a batch that fails is
    applied member by member, so one failing read model holds up only itself. Members follow
    all their topics (`narrowed_topics` is for processes that run alone).
    """

    def __init__(self, projectors: Sequence[Projector], batch_size: int = 500) -> None:
        if not projectors:
            raise ValueError("a projector group needs members")
        self.projectors = list(projectors)
        self.app = projectors[0].app
        self.db = projectors[0].db
        self.batch_size = batch_size
        self.idle_write = IDLE_WRITE_SECONDS
        self._written_at = 0.0
        self._update_position = self.db.prepare(
            "UPDATE {projection_positions} SET position = ? WHERE name = ?"
        )

    def run_once(self, members: Sequence[Projector] | None = None) -> int:
        """Apply the next batch to `members` (all by default); returns how far the position
        of the member that moved furthest moved (in ids).

        Members that are level (the usual case: they move together) share a batch. One that
        fell behind (added by an upgrade, or back from a failure) catches up in batches of
        its own, after the others' batch, so it never holds them up.
        """
        now = time.monotonic()
        members = [
            m for m in (self.projectors if members is None else members) if m._retry_at <= now
        ]
        if not members:
            return 0
        stored = self._positions(members)  # (a store that is down raises here)
        members = [m for m in members if stored[m] >= 0]  # (no position row: no schema yet)
        starts = {m: max(stored[m], m._seen) for m in members}
        if not starts:
            return 0
        lead = max(starts.values())
        leaders = [m for m in members if starts[m] == lead]
        behind = [m for m in members if starts[m] < lead]
        moved = self._step(leaders, stored, starts)
        if behind:
            moved = max(moved, self._step(behind, stored, starts))
        return moved

    def _step(
        self, members: list[Projector], stored: dict[Projector, int], starts: dict[Projector, int]
    ) -> int:
        """One batch of the log for `members`, from the earliest of their starts."""
        start = min(starts[m] for m in members)
        head = self.app.recorder.max_notification_id() or 0
        if head <= start:  # the log stopped growing: write down what was skipped
            skipped = {m: (starts[m], []) for m in members if stored[m] < starts[m]}
            if skipped:
                self._write(stored, skipped)
            return 0
        topics = sorted(frozenset().union(*(m.projection.topics for m in members)))
        notifications, end = read_batch(self.app, start, head, topics, self.batch_size)
        to_domain_event = self.app.mapper.to_domain_event
        decoded = [(n.id, n.topic, to_domain_event(n)) for n in notifications]
        work: dict[Projector, tuple[int, list[tuple[int, Any]]]] = {}
        for m in members:
            if starts[m] < end:
                after, follows = starts[m], m.projection.topics
                work[m] = (end, [(i, e) for i, t, e in decoded if i > after and t in follows])
        idle = time.monotonic() - self._written_at < self.idle_write
        if idle and not any(events for _, events in work.values()):
            for m in work:
                m._seen = end
        else:
            moved = self._write(stored, work)
            work = {m: work[m] for m in moved}
        return max((end - starts[m] for m in work), default=0)

    def _write(
        self, stored: dict[Projector, int], work: dict[Projector, tuple[int, list[Any]]]
    ) -> list[Projector]:
        """Apply each member's events and move its position (`work`: member -> (end, events)),
        in one transaction; returns the members moved. A member whose position moved since
        `stored` was read is left out (it rereads). If the transaction fails, the members try
        one by one, so the failure stays with the read model at fault, which sits out
        FAILED_RETRY_SECONDS and is then retried with the batch it failed."""
        try:
            with self.db.transaction() as cursor:
                now = self._positions(list(work), cursor)
                moved = [m for m in work if now[m] == stored[m]]
                for m in moved:
                    if work[m][1]:
                        m.projection.apply(self.db, cursor, work[m][1])
                updates = [(work[m][0], m.projection.name) for m in moved]
                cursor.executemany(self._update_position, updates)
        except Exception as error:
            if len(work) > 1:
                return [m for item in work.items() for m in self._write(stored, dict([item]))]
            (m,) = work
            name = m.projection.name
            if isinstance(error, PersistenceError):  # the store, most likely: no traceback
                log.warning("read model %s paused %.0f s: %s", name, FAILED_RETRY_SECONDS, error)
            else:
                log.exception(
                    "read model %s failed; retrying in %.0f s", name, FAILED_RETRY_SECONDS
                )
            m._retry_at = time.monotonic() + FAILED_RETRY_SECONDS
            m._seen = 0
            return []
        self._written_at = time.monotonic()
        for m in work:
            # one whose position moved under it rereads from there
            m._seen = work[m][0] if m in moved else 0
            m._written_at = self._written_at
        return moved

    def _positions(self, members: list[Projector], cursor: Any = None) -> dict[Projector, int]:
        """The members' stored positions; with `cursor`, read and locked in its transaction."""
        if cursor is None:
            found = positions(self.db)
        else:
            where, names = self.db.one_of("name", [m.projection.name for m in members])
            cursor.execute(
                self.db.prepare(
                    "SELECT name, position FROM {projection_positions} WHERE "  # noqa: S608
                    + where
                    + " {for_update}"
                ),
                names,
            )
            found = {row["name"]: int(row["position"]) for row in cursor.fetchall()}
        return {m: found.get(m.projection.name, -1) for m in members}


def read_batch(
    app: Application[Any], start: int, head: int, topics: list[str], limit: int
) -> tuple[list[Notification], int]:
    """Up to `limit` notifications of `topics` after `start`, up to `head`, and how far the
    read got: the last one's id when the batch is full, else `head` (nothing else of interest
    lies before it)."""
    notifications: list[Notification] = list(
        app.recorder.select_notifications(
            start=start, limit=limit, stop=head, topics=topics, inclusive_of_start=False
        )
    )
    return notifications, notifications[-1].id if len(notifications) >= limit else head


def positions(db: SqlDatabase) -> dict[str, int]:
    """How far each read model and process has followed the log (notification ids)."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(db.prepare("SELECT name, position FROM {projection_positions}"))
        return {row["name"]: int(row["position"]) for row in cursor.fetchall()}
