"""Follow the notification log and keep read models up to date, exactly once.

One mechanism for both stores: poll `select_notifications` after the last position, apply the
events to the read model and move the position in the same transaction. A projector that finds
the position moved under it (another process got there first) drops its batch and rereads, so
running a projector in several processes is safe. Positions are notification ids, which may
have gaps; only "the last one seen" is ever assumed.
"""

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from adapters.sql import SqlDatabase

log = logging.getLogger("postline.projections")

POSITIONS_DDL = (
    "CREATE TABLE IF NOT EXISTS {projection_positions} "
    "(name TEXT PRIMARY KEY, position {bigint} NOT NULL)"
)


class Projection(Protocol):
    """A read model: its tables and how events change them."""

    name: str
    topics: frozenset[str]  # event topics it reads
    tables: tuple[str, ...]  # its tables, emptied by a rebuild

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
        """Apply the next batch of events; returns how many notifications were consumed."""
        start = self.position()
        notifications: list[Notification] = list(
            self.app.recorder.select_notifications(
                start=start, limit=self.batch_size, inclusive_of_start=False
            )
        )
        if not notifications:
            return 0
        # Filtering here rather than in SQL lets the position advance past events of no
        # interest, so "has the read model seen notification N" always has an answer.
        topics = self.projection.topics
        to_domain_event = self.app.mapper.to_domain_event
        events = [(n.id, to_domain_event(n)) for n in notifications if n.topic in topics]
        with self.db.transaction() as cursor:
            cursor.execute(self._select_position, (self.projection.name,))
            row = cursor.fetchone()
            if row is None or int(row["position"]) != start:
                return 0  # another projector moved on; reread from its position
            self.projection.apply(self.db, cursor, events)
            cursor.execute(self._update_position, (notifications[-1].id, self.projection.name))
        return len(notifications)

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
        """Drop the read model's rows and project the whole log again."""
        with self.db.transaction() as cursor:
            for table in self.projection.tables:
                cursor.execute(self.db.prepare(f"DELETE FROM {{{table}}}"))  # noqa: S608
            cursor.execute(self._update_position, (0, self.projection.name))
        return self.catch_up(progress)

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the read model has reached `position` (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while self.position() < position:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True
