"""The webhook outbox: what each webhook has yet to be sent, in log order.

A follower of the log (not a read model: `postline replay` leaves it alone, since what was
sent is gone from it). It keeps each webhook's subscription as its events say, and for each
event it follows writes one row per webhook that wants it, in the same transaction that moves
its position: an event is queued exactly once, whatever crashes. The sender
(engine.webhook_sender) posts the rows and deletes what was taken, so delivery is at least once.

A webhook gets the message events of mail accepted while it existed (their recipients, stream
and sender are remembered for accounts with an email-sending webhook) and the audit-log
entries made while it exists. A paused webhook queues nothing until it is resumed.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.addresses import domain_of
from domain.message import Message
from domain.webhooks import (
    MessageFacts,
    Webhook,
    message_event_type,
    message_payload,
)
from projections.audit_log import RESOURCE_DDL, AuditLog, activities
from projections.times import api_time, stored_time

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
MESSAGE_EVENTS = (
    Message.Delivered,
    Message.SoftBounced,
    Message.Bounced,
    Message.Suspended,
    Message.Rejected,
    Message.Unsubscribed,
    Message.Complained,
    Message.Opened,
    Message.Clicked,
)
WEBHOOK_EVENTS = (
    Webhook.Created,
    Webhook.Changed,
    Webhook.Paused,
    Webhook.SecretRotated,
    Webhook.Deleted,
)
FACT_COLUMNS = (
    ("message_id", "text"),
    ("account_id", "bigint"),
    ("stream", "text"),
    ("recipient", "text"),
    ("sender_domain", "text"),
    ("category", "text"),
    ("custom_variables", "text"),
)
KEPT_ATTEMPTS = 100
ATTEMPT_COLUMNS = (
    ("attempt_id", "text"),
    ("webhook_id", "bigint"),
    ("at", "timestamptz"),
    ("status_code", "integer"),
    ("latency_ms", "integer"),
    ("events", "integer"),
    ("error", "text"),
)
OUTBOX_COLUMNS = (
    ("webhook_id", "bigint"),
    ("position", "bigint"),
    ("payload", "text"),
    ("created_at", "timestamptz"),
)
SUBSCRIPTION_COLUMNS = (
    ("webhook_id", "bigint"),
    ("aggregate_id", "text"),
    ("account_id", "bigint"),
    ("settings", "text"),
    ("domain_key", "text"),
    ("sealed_secret", "text"),
    ("deleted", "integer"),
)


@dataclass
class Subscription:
    """A webhook as the outbox and the sender know it."""

    webhook_id: int
    aggregate_id: str
    account_id: int
    settings: dict[str, Any]
    sealed_secret: str
    deleted: bool = False
    domain_name: str | None = field(default=None, compare=False)  # of settings["domain_id"]

    @property
    def domain_key(self) -> str | None:
        domain_id = self.settings.get("domain_id")
        return None if domain_id is None else str(domain_id)

    def wants_mail(self, facts: MessageFacts, kind: str) -> bool:
        s = self.settings
        return (
            s["webhook_type"] == "email_sending"
            and s["active"]
            and not self.deleted
            and s["sending_stream"] == facts.stream
            and kind in s["event_types"]
            and (s["domain_id"] is None or self.domain_name == facts.sender_domain)
        )

    def wants_activity(self) -> bool:
        return (
            self.settings["webhook_type"] == "audit_log"
            and self.settings["active"]
            and not self.deleted
        )


class WebhookOutbox:
    """Queues each webhook's events (see the module docstring)."""

    name = "webhook_outbox"
    tables = ("webhook_outbox", "webhook_subscriptions", "webhook_messages", "webhook_resources")
    topics = frozenset(
        {get_topic(kind) for kind in (Message.Accepted, *MESSAGE_EVENTS, *WEBHOOK_EVENTS)}
        | AuditLog.topics
    )
    _audit_topics = AuditLog.topics
    # Without an email-sending webhook, message events change nothing here: only these are
    # read (the log's hot path is mail), until a webhook is created.
    widening_topics = frozenset({get_topic(Webhook.Created)})
    _without_mail = frozenset({get_topic(kind) for kind in WEBHOOK_EVENTS} | AuditLog.topics)

    def narrowed_topics(self, db: SqlDatabase) -> frozenset[str] | None:
        with db.transaction(commit=False) as cursor:
            cursor.execute(
                db.prepare(
                    "SELECT 1 AS found FROM {webhook_subscriptions} WHERE deleted = 0"
                    " AND settings LIKE '%email_sending%' LIMIT 1"
                )
            )
            return None if cursor.fetchone() else self._without_mail

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {webhook_subscriptions} ("
            " webhook_id {bigint} PRIMARY KEY,"
            " aggregate_id TEXT NOT NULL,"
            " account_id {bigint} NOT NULL,"
            " settings TEXT NOT NULL,"
            " domain_key TEXT,"
            " sealed_secret TEXT NOT NULL,"
            " deleted INTEGER NOT NULL)"
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {webhook_messages} ("
            " message_id TEXT PRIMARY KEY,"
            " account_id {bigint} NOT NULL,"
            " stream TEXT NOT NULL,"
            " recipient TEXT NOT NULL,"
            " sender_domain TEXT NOT NULL,"
            " category TEXT,"
            " custom_variables TEXT NOT NULL)"
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {webhook_outbox} ("
            " webhook_id {bigint} NOT NULL,"
            " position {bigint} NOT NULL,"
            " payload TEXT NOT NULL,"
            " created_at {ts} NOT NULL,"
            " PRIMARY KEY (webhook_id, position))"
        )
        yield RESOURCE_DDL.replace("{resources}", "{webhook_resources}")
        # The sender's: each webhook's failures and lease, and its recent attempts.
        yield (
            "CREATE TABLE IF NOT EXISTS {webhook_delivery_state} ("
            " webhook_id {bigint} PRIMARY KEY,"
            " failures INTEGER NOT NULL DEFAULT 0,"
            " first_failure_at {ts},"
            " next_attempt_at {ts},"
            " lease_until {ts},"
            " leased_by TEXT)"
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {webhook_attempts} ("
            " attempt_id TEXT PRIMARY KEY,"
            " webhook_id {bigint} NOT NULL,"
            " at {ts} NOT NULL,"
            " status_code INTEGER,"
            " latency_ms INTEGER NOT NULL,"
            " events INTEGER NOT NULL,"
            " error TEXT)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:webhook_attempts_by_webhook}"
            " ON {webhook_attempts} (webhook_id, at)"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        subscriptions = load_subscriptions(db, cursor)
        changed: set[str] = set()
        by_account: dict[int, list[Subscription]] = {}

        def index() -> None:
            by_account.clear()
            for sub in subscriptions.values():
                by_account.setdefault(sub.account_id, []).append(sub)

        index()
        facts = self._facts(db, cursor, events)
        new_facts: list[tuple[Any, ...]] = []
        rows: list[tuple[Any, ...]] = []
        audit: list[tuple[int, Any]] = []
        for position, e in events:
            if get_topic(type(e)) in self._audit_topics:
                audit.append((position, e))
            if isinstance(e, WEBHOOK_EVENTS):
                # The audit entries so far go to the webhooks as they were until now.
                rows += self._activities(db, cursor, audit, by_account)
                audit.clear()
                sub = _subscription_event(subscriptions, e)
                if sub is not None:
                    if sub.domain_key is not None and sub.domain_name is None:
                        sub.domain_name = _domain_name(db, cursor, sub)
                    changed.add(sub.aggregate_id)
                index()
                continue
            if isinstance(e, Message.Accepted):
                subs = by_account.get(e.account_id, ())
                if any(s.settings["webhook_type"] == "email_sending" for s in subs):
                    fact = MessageFacts(
                        e.account_id,
                        e.stream,
                        e.recipient,
                        domain_of(e.sender).lower(),
                        e.category,
                        e.custom_variables,
                    )
                    facts[str(e.originator_id)] = fact
                    new_facts.append(_fact_row(str(e.originator_id), fact))
                continue
            kind = message_event_type(e)
            if kind is None:
                continue
            fact = facts.get(str(e.originator_id))
            if fact is None:
                continue  # accepted while its account had no email-sending webhook
            for sub in by_account.get(fact.account_id, ()):
                if sub.wants_mail(fact, kind):
                    payload = _ENCODER.encode(message_payload(e, fact)).decode()
                    rows.append((sub.webhook_id, position, payload, stored_time(e.timestamp)))
        rows += self._activities(db, cursor, audit, by_account)
        db.insert(cursor, "webhook_messages", FACT_COLUMNS, new_facts, "ON CONFLICT DO NOTHING")
        db.insert(cursor, "webhook_outbox", OUTBOX_COLUMNS, rows, "ON CONFLICT DO NOTHING")
        # after the rows: what a webhook deleted in this batch had queued goes with it
        _save_subscriptions(db, cursor, [subscriptions[key] for key in changed])

    @staticmethod
    def _activities(
        db: SqlDatabase,
        cursor: Any,
        audit: list[tuple[int, Any]],
        by_account: dict[int, list[Subscription]],
    ) -> list[tuple[Any, ...]]:
        """Outbox rows of the audit-log webhooks for the entries these events make."""
        rows = []
        for position, activity in activities(db, cursor, audit, "webhook_resources"):
            for sub in by_account.get(activity.account_id, ()):
                if sub.wants_activity():
                    payload = _ENCODER.encode(activity.payload()).decode()
                    rows.append((sub.webhook_id, position, payload, stored_time(activity.at)))
        return rows

    @staticmethod
    def _facts(
        db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]
    ) -> dict[str, MessageFacts]:
        """The remembered facts of the messages the batch's message events are about."""
        wanted = sorted(
            {str(e.originator_id) for _, e in events if message_event_type(e) is not None}
        )
        if not wanted:
            return {}
        cursor.execute(
            db.prepare(
                "SELECT * FROM {webhook_messages} WHERE message_id IN ("  # noqa: S608
                + ", ".join(["?"] * len(wanted))
                + ")"
            ),
            wanted,
        )
        return {
            row["message_id"]: MessageFacts(
                int(row["account_id"]),
                row["stream"],
                row["recipient"],
                row["sender_domain"],
                row["category"],
                _DECODER.decode(row["custom_variables"]),
            )
            for row in cursor.fetchall()
        }


def _fact_row(message_id: str, fact: MessageFacts) -> tuple[Any, ...]:
    return (
        message_id,
        fact.account_id,
        fact.stream,
        fact.recipient,
        fact.sender_domain,
        fact.category,
        _ENCODER.encode(fact.custom_variables).decode(),
    )


def _subscription_event(subscriptions: dict[str, Subscription], e: Any) -> Subscription | None:
    """Apply a webhook's event to the subscriptions; the one it changed."""
    key = str(e.originator_id)
    if isinstance(e, Webhook.Created):
        sub = Subscription(e.webhook_id, key, e.account_id, dict(e.settings), e.sealed_secret)
        subscriptions[key] = sub
        return sub
    sub = subscriptions.get(key)
    if sub is None:
        return None
    if isinstance(e, Webhook.Changed):
        sub.settings = dict(e.settings)
    elif isinstance(e, Webhook.Paused):
        sub.settings = {**sub.settings, "active": False}
    elif isinstance(e, Webhook.SecretRotated):
        sub.sealed_secret = e.sealed_secret
    elif isinstance(e, Webhook.Deleted):
        sub.deleted = True
    return sub


def _domain_name(db: SqlDatabase, cursor: Any, sub: Subscription) -> str | None:
    cursor.execute(
        db.prepare(
            "SELECT name FROM {webhook_resources} WHERE type = 'sending_domain'"
            " AND account_id = ? AND resource_id = ?"
        ),
        (sub.account_id, sub.domain_key),
    )
    row = cursor.fetchone()
    return None if row is None else row["name"]


def load_subscriptions(db: SqlDatabase, cursor: Any) -> dict[str, Subscription]:
    """The webhooks that are not deleted, with their sending domain's name."""
    cursor.execute(
        db.prepare(
            "SELECT s.*, r.name AS domain_name FROM {webhook_subscriptions} AS s"
            " LEFT JOIN {webhook_resources} AS r ON r.type = 'sending_domain'"
            " AND r.account_id = s.account_id AND r.resource_id = s.domain_key"
            " WHERE s.deleted = 0"
        )
    )
    return {
        row["aggregate_id"]: Subscription(
            int(row["webhook_id"]),
            row["aggregate_id"],
            int(row["account_id"]),
            _DECODER.decode(row["settings"]),
            row["sealed_secret"],
            domain_name=row["domain_name"],
        )
        for row in cursor.fetchall()
    }


def _save_subscriptions(db: SqlDatabase, cursor: Any, subs: list[Subscription]) -> None:
    for sub in subs:
        cursor.execute(
            db.prepare("DELETE FROM {webhook_subscriptions} WHERE webhook_id = ?"),
            (sub.webhook_id,),
        )
        if sub.deleted:  # what it had yet to be sent goes with it
            for table in ("webhook_outbox", "webhook_delivery_state"):
                cursor.execute(
                    db.prepare("DELETE FROM {" + table + "} WHERE webhook_id = ?"),  # noqa: S608
                    (sub.webhook_id,),
                )
    db.insert(
        cursor,
        "webhook_subscriptions",
        SUBSCRIPTION_COLUMNS,
        [
            (
                s.webhook_id,
                s.aggregate_id,
                s.account_id,
                _ENCODER.encode(s.settings).decode(),
                s.domain_key,
                s.sealed_secret,
                int(s.deleted),
            )
            for s in subs
        ],
    )


# What the sender (engine.webhook_sender) reads and writes.


@dataclass(frozen=True, slots=True)
class DeliveryState:
    failures: int
    first_failure_at: datetime | None


def subscriptions_of(db: SqlDatabase, account_id: int) -> list[Subscription]:
    """The account's webhooks, by id."""
    with db.transaction(commit=False) as cursor:
        found = load_subscriptions(db, cursor)
    return sorted((s for s in found.values() if s.account_id == account_id), key=_by_id)


def _by_id(sub: Subscription) -> int:
    return sub.webhook_id


def due(db: SqlDatabase, now: datetime) -> list[Subscription]:
    """Active webhooks with events waiting, not waiting out a failure, not being sent."""
    at = stored_time(now)
    with db.transaction(commit=False) as cursor:
        subs = load_subscriptions(db, cursor)
        cursor.execute(
            db.prepare(
                "SELECT DISTINCT o.webhook_id FROM {webhook_outbox} AS o"
                " LEFT JOIN {webhook_delivery_state} AS d ON d.webhook_id = o.webhook_id"
                " WHERE (d.next_attempt_at IS NULL OR d.next_attempt_at <= ?)"
                " AND (d.lease_until IS NULL OR d.lease_until < ?)"
            ),
            (at, at),
        )
        waiting = {int(row["webhook_id"]) for row in cursor.fetchall()}
    return sorted(
        (s for s in subs.values() if s.webhook_id in waiting and s.settings["active"]), key=_by_id
    )


def claim(db: SqlDatabase, webhook_id: int, owner: str, now: datetime, until: datetime) -> bool:
    """Take the webhook's lease (one sender at a time); False if another holds it."""
    with db.transaction() as cursor:
        cursor.execute(
            db.prepare(
                "INSERT INTO {webhook_delivery_state} (webhook_id, failures) VALUES (?, 0)"
                " ON CONFLICT (webhook_id) DO NOTHING"
            ),
            (webhook_id,),
        )
        cursor.execute(
            db.prepare(
                "UPDATE {webhook_delivery_state} SET lease_until = ?, leased_by = ?"
                " WHERE webhook_id = ? AND (lease_until IS NULL OR lease_until < ?)"
            ),
            (stored_time(until), owner, webhook_id, stored_time(now)),
        )
        cursor.execute(
            db.prepare("SELECT leased_by FROM {webhook_delivery_state} WHERE webhook_id = ?"),
            (webhook_id,),
        )
        return bool(cursor.fetchone()["leased_by"] == owner)


def batch(
    db: SqlDatabase, webhook_id: int, limit: int
) -> tuple[DeliveryState, list[tuple[int, str]]]:
    """The webhook's failure record and its oldest `limit` waiting events (position, JSON)."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT failures, first_failure_at FROM {webhook_delivery_state}"
                " WHERE webhook_id = ?"
            ),
            (webhook_id,),
        )
        row = cursor.fetchone()
        cursor.execute(
            db.prepare(
                "SELECT position, payload FROM {webhook_outbox} WHERE webhook_id = ?"
                " ORDER BY position LIMIT ?"
            ),
            (webhook_id, limit),
        )
        rows = [(int(r["position"]), r["payload"]) for r in cursor.fetchall()]
    first = None if row is None else row["first_failure_at"]
    if isinstance(first, str):
        first = datetime.fromisoformat(first)
    return DeliveryState(0 if row is None else int(row["failures"]), first), rows


def settle(
    db: SqlDatabase,
    webhook_id: int,
    attempt: tuple[Any, ...] | None,
    sent: list[int] | None,
    failure: tuple[int, datetime, datetime | None] | None,
) -> None:
    """Record an attempt (`ATTEMPT_COLUMNS` values, if any) and its outcome, releasing the
    lease: `sent` positions leave the outbox; or `failure` (failures, first failure, next
    attempt)."""
    with db.transaction() as cursor:
        if attempt is not None:
            db.insert(cursor, "webhook_attempts", ATTEMPT_COLUMNS, [attempt])
        if sent is not None:
            for position in sent:
                cursor.execute(
                    db.prepare(
                        "DELETE FROM {webhook_outbox} WHERE webhook_id = ? AND position = ?"
                    ),
                    (webhook_id, position),
                )
            cursor.execute(
                db.prepare(
                    "UPDATE {webhook_delivery_state} SET failures = 0, first_failure_at = NULL,"
                    " next_attempt_at = NULL, lease_until = NULL WHERE webhook_id = ?"
                ),
                (webhook_id,),
            )
        elif failure is not None:
            failures, first, next_at = failure
            cursor.execute(
                db.prepare(
                    "UPDATE {webhook_delivery_state} SET failures = ?, first_failure_at = ?,"
                    " next_attempt_at = ?, lease_until = NULL WHERE webhook_id = ?"
                ),
                (
                    failures,
                    stored_time(first),
                    None if next_at is None else stored_time(next_at),
                    webhook_id,
                ),
            )
        cursor.execute(  # the delivery log keeps each webhook's last attempts
            db.prepare(
                "DELETE FROM {webhook_attempts} WHERE webhook_id = ? AND attempt_id NOT IN"
                " (SELECT attempt_id FROM {webhook_attempts} WHERE webhook_id = ?"
                " ORDER BY at DESC LIMIT ?)"
            ),
            (webhook_id, webhook_id, KEPT_ATTEMPTS),
        )


def resume(db: SqlDatabase, webhook_id: int) -> None:
    """Forget a paused webhook's failures: it starts afresh."""
    with db.transaction() as cursor:
        cursor.execute(
            db.prepare(
                "UPDATE {webhook_delivery_state} SET failures = 0, first_failure_at = NULL,"
                " next_attempt_at = NULL WHERE webhook_id = ?"
            ),
            (webhook_id,),
        )


def attempts(db: SqlDatabase, webhook_id: int) -> list[dict[str, Any]]:
    """The webhook's recent delivery attempts, newest first."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT at, status_code, latency_ms, events, error FROM {webhook_attempts}"
                " WHERE webhook_id = ? ORDER BY at DESC"
            ),
            (webhook_id,),
        )
        rows = cursor.fetchall()
    return [
        {
            "at": api_time(row["at"]),
            "status_code": row["status_code"],
            "latency_ms": row["latency_ms"],
            "events": row["events"],
            "success": row["status_code"] is not None and 200 <= row["status_code"] < 300,
            "error": row["error"],
        }
        for row in rows
    ]


def waiting(db: SqlDatabase, webhook_id: int) -> int:
    """How many events the webhook has yet to be sent."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare("SELECT COUNT(*) AS n FROM {webhook_outbox} WHERE webhook_id = ?"),
            (webhook_id,),
        )
        return int(cursor.fetchone()["n"])
