"""Dispatch: the process that decides what happens to each accepted message.

It follows the event log like a projection, but what it writes are events: today every
accepted message is `Queued` for delivery (suppressions and sending-domain checks will turn some
into `Rejected` or `Suspended`). A `Queued` event is version 2 of its message, so recording one
twice (after a crash, or from two dispatchers) conflicts instead of duplicating: a batch that
conflicts is recorded again message by message, skipping those already dispatched.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.message import Message, follow_up
from engine.committer import GroupCommitter
from engine.errors import Conflict

log = logging.getLogger("postline.dispatch")


class Dispatch:
    """A projection whose output is `Queued` events (see the module docstring)."""

    name = "dispatch"
    tables: tuple[str, ...] = ()
    topics = frozenset({get_topic(Message.Accepted)})

    def __init__(
        self, committer: GroupCommitter, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._committer = committer
        self._clock = clock

    def schema(self) -> Iterable[str]:
        return ()

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        now = self._clock()
        queued = [
            follow_up(Message.Queued, e.originator_id, e.originator_version + 1, now)
            for _, e in events
            if isinstance(e, Message.Accepted)
        ]
        if not queued:
            return
        try:
            self._committer.submit(queued).result()
        except Conflict:
            for event in queued:
                try:
                    self._committer.submit([event]).result()
                except Conflict:
                    log.debug("message %s was already dispatched", event.originator_id)
