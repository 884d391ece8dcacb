"""Suppressions: addresses an account must not mail (spec §4).

One `Suppression` per (account, address, sending domain, stream), its id derived from them,
so suppressing an address twice is one record; reactivating it (the API's delete) ends the
suppression and a later bounce or import starts it again. A suppression with no domain holds
for every domain of the account; stream `any` holds for both streams.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.activity import SYSTEM, Actor
from domain.ids import key_id

TYPES = ("hard bounce", "unsubscription", "spam complaint", "manual import")
STREAMS = ("transactional", "bulk", "any")
# Hard bounces that suppress the address (spec §4): the mailbox is gone, full, or never answers.
SUPPRESSING_CATEGORIES = frozenset({"badrecipient", "overquota", "timeout"})


def suppression_id(account_id: int, email: str, domain: str | None, stream: str) -> UUID:
    """The id of the suppression of `email` in this scope (the API's `id`)."""
    return key_id("suppression", f"{account_id}:{domain or '*'}:{stream}:{email.lower()}")


def reject_reason(kind: str) -> str:
    """The reason a suppressed recipient's message is rejected with (spec §4)."""
    return f"Recipient in suppression list. Reason: {kind}"


class Suppression(Aggregate):
    """An address an account does not mail, in one scope."""

    @event("Suppressed")
    def __init__(
        self,
        id: UUID,
        account_id: int,
        email: str,
        domain: str | None,
        stream: str,
        type: str,
        message: dict[str, Any],  # what caused it: the message's details (bounces), or {}
        actor: Actor | None = None,  # who added it (domain.activity)
    ) -> None:
        self.account_id = account_id
        self.email = email
        self.domain = domain
        self.stream = stream
        self.type = type
        self.active = True

    @event("Resuppressed")
    def _again(self, type: str, message: dict[str, Any], actor: Actor | None = None) -> None:
        self.type = type
        self.active = True

    @event("Reactivated")
    def _reactivated(self, at: datetime, actor: Actor | None = None) -> None:
        self.active = False

    def suppress_again(self, type: str, message: dict[str, Any], actor: Actor = SYSTEM) -> bool:
        """Suppress a reactivated address again; False when it is still suppressed."""
        if self.active:
            return False
        self._again(type, message, actor)
        return True

    def reactivate(self, at: datetime, actor: Actor = SYSTEM) -> None:
        if self.active:
            self._reactivated(at, actor)
