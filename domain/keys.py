"""Unique keys: an aggregate whose id is derived from a key, claimed once by an owner.

Saving a claim together with its owner makes the key unique (a second claim conflicts on
version 1) and gives a lookup by key without a read model, e.g. API token digest -> token. A
key can be released (a deleted sending domain's name) and claimed again by a new owner; two
concurrent claims of a released key conflict on the next version the same way.
"""

from uuid import UUID

from eventsourcing.domain import Aggregate, event


class UniqueKey(Aggregate):
    """The claim of `key` in key space `kind` by the aggregate `owner`."""

    @event("Claimed")
    def __init__(self, id: UUID, kind: str, key: str, owner: UUID) -> None:
        self.kind = kind
        self.key = key
        self.owner: UUID | None = owner

    @event("Released")
    def release(self) -> None:
        self.owner = None

    @event("Reclaimed")
    def reclaim(self, owner: UUID) -> None:
        self.owner = owner
