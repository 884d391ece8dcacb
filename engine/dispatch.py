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
from domain.addresses import comparable_domain, domain_of
from domain.message import Message, follow_up
from domain.suppressions import reject_reason
from engine.committer import GroupCommitter
from engine.errors import Conflict
from projections.suppressions import matching

log = logging.getLogger("postline.dispatch")


def _suppressed(
    message: Any, found: dict[tuple[int, str], list[tuple[str | None, str, str]]]
) -> str | None:
    """The type of the suppression that stops `message`, if one does."""
    domain = comparable_domain(domain_of(message.sender))
    for scope_domain, stream, kind in found.get(
        (message.account_id, message.recipient.lower()), []
    ):
        if scope_domain in (None, domain) and stream in (message.stream, "any"):
            return kind
    return None


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
        accepted = [e for _, e in events if isinstance(e, Message.Accepted)]
        if not accepted:
            return
        suppressions = matching(db, cursor, [e.recipient for e in accepted])
        queued = []
        for e in accepted:
            version = e.originator_version + 1
            kind = _suppressed(e, suppressions)
            if kind is None:
                queued.append(follow_up(Message.Queued, e.originator_id, version, now))
            else:
                queued.append(
                    follow_up(
                        Message.Rejected, e.originator_id, version, now, reason=reject_reason(kind)
                    )
                )
        try:
            self._committer.submit(queued).result()
        except Conflict:
            for event in queued:
                try:
                    self._committer.submit([event]).result()
                except Conflict:
                    log.debug("message %s was already dispatched", event.originator_id)
