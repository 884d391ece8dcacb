"""Counters that allocate the public integer ids of accounts, tokens and other entities."""

from uuid import UUID

from eventsourcing.domain import Aggregate, event


class Sequence(Aggregate):
    """A monotonically increasing counter; each allocation is an event."""

    @event("Started")
    def __init__(self, id: UUID, kind: str) -> None:
        self.kind = kind
        self.last = 0

    def allocate(self) -> int:
        """Take the next number."""
        self._allocated(self.last + 1)
        return self.last

    @event("Allocated")
    def _allocated(self, number: int) -> None:
        self.last = number
