"""Suppression commands, and the process that suppresses recipients who cannot or will not
take more mail.

`AutoSuppress` follows the log like a projection but writes `Suppression` events: a message
that bounced with category `badrecipient`, `overquota` or `timeout`, whose recipient
unsubscribed or complained of spam, suppresses its recipient for its sender's domain and
stream (spec §4). Recording a suppression twice is a no-op, so a replayed event changes nothing.
"""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.activity import SYSTEM, Actor
from domain.addresses import comparable_domain, domain_of
from domain.message import Message
from domain.suppressions import SUPPRESSING_CATEGORIES, Suppression, suppression_id
from engine.errors import Conflict
from engine.store import EventStore

SAVE_ATTEMPTS = 3


def suppress(
    store: EventStore,
    account_id: int,
    email: str,
    domain: str | None,
    stream: str,
    kind: str,
    message: dict[str, Any] | None = None,
    actor: Actor = SYSTEM,
) -> UUID:
    """Suppress `email` in this scope (idempotent); returns the suppression's id."""
    aggregate_id = suppression_id(account_id, email, domain, stream)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        existing = store.get(aggregate_id)
        if existing is None:
            record = Suppression(
                id=aggregate_id,
                account_id=account_id,
                email=email,
                domain=domain,
                stream=stream,
                type=kind,
                message=message or {},
                actor=actor,
            )
        elif existing.suppress_again(kind, message or {}, actor):
            record = existing
        else:
            return aggregate_id  # already suppressed
        try:
            store.save(record)
            return aggregate_id
        except Conflict:
            if attempt == SAVE_ATTEMPTS:
                raise
    return aggregate_id


def reactivate(store: EventStore, account_id: int, id: UUID, actor: Actor = SYSTEM) -> bool:
    """End the account's suppression `id`; False when there is no such active suppression."""
    record = store.get(id)
    if not isinstance(record, Suppression) or record.account_id != account_id or not record.active:
        return False
    record.reactivate(datetime.now(UTC), actor)
    store.save(record)
    return True


class AutoSuppress:
    """A log follower that suppresses hard-bounced recipients (see the module docstring)."""

    name = "auto_suppress"
    tables: tuple[str, ...] = ()
    topics = frozenset(
        get_topic(kind) for kind in (Message.Bounced, Message.Unsubscribed, Message.Complained)
    )

    def __init__(self, store: EventStore) -> None:
        self._store = store

    def schema(self) -> tuple[str, ...]:
        return ()

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        for _, e in events:
            if isinstance(e, Message.Bounced):
                if e.bounce_category not in SUPPRESSING_CATEGORIES:
                    continue
                kind = "hard bounce"
                outcome = {
                    "bounce_category": e.bounce_category,
                    "esp_response": e.response,
                    "outgoing_ip": e.sending_ip,
                    "recipient_mx_name": e.mx,
                }
            else:
                kind = "unsubscription" if isinstance(e, Message.Unsubscribed) else "spam complaint"
                outcome = {}
            message = self._store.get(e.originator_id)
            if not isinstance(message, Message):
                continue
            details = {
                "bounce_category": None,
                "category": message.category,
                "client_ip": message.client_ip,
                "created_at": message.created_on.isoformat(),
                "esp_response": None,
                "esp_server_type": None,
                "outgoing_ip": None,
                "recipient_mx_name": None,
                "sender_email": message.sender,
                "subject": message.subject,
                **outcome,
            }
            domain = comparable_domain(domain_of(message.sender))
            suppress(
                self._store,
                message.account_id,
                message.recipient,
                domain,
                message.stream,
                kind,
                details,
            )
