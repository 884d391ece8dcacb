"""The delivery queue: what is due, where it goes, and who is working on it.

A read model like any other (rebuilt from the log by `postline replay`): a row appears when a
message is accepted, becomes due when it is queued, moves its due time on a soft bounce and
goes away once the message is delivered or bounced. MTA workers claim due rows with a lease
(`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several processes share one queue; a worker that
dies leaves its lease to expire and the message is tried again. `version` is the message
aggregate's version as this read model last saw it: a worker records its outcome as the next
version, and an update from an older event never overwrites a newer one.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.addresses import ascii_domain, domain_of
from domain.message import Message
from projections.times import stored_time

QUEUE_COLUMNS = (
    ("message_id", "text"),
    ("account_id", "bigint"),
    ("stream", "text"),
    ("sender", "text"),
    ("recipient", "text"),
    ("domain", "text"),
    ("format", "text"),
    ("head", "text"),
    ("body", "text"),
    ("accepted_at", "timestamptz"),
    ("version", "bigint"),
)
INSERT_COLUMNS = (*QUEUE_COLUMNS, ("due_at", "timestamptz"), ("attempts", "integer"))
_VERSION, _DUE, _ATTEMPTS = 10, 11, 12  # positions in an inserted row


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A claimed row: everything a worker needs to deliver one recipient's copy."""

    message_id: str
    account_id: int
    stream: str
    sender: str
    recipient: str
    domain: str
    format: str
    head: str
    body: str
    accepted_at: datetime
    version: int
    attempts: int


class DeliveryQueue:
    """The queue read model."""

    name = "delivery_queue"
    tables = ("delivery_queue",)
    topics = frozenset(
        get_topic(kind)
        for kind in (
            Message.Accepted,
            Message.Queued,
            Message.SoftBounced,
            Message.Delivered,
            Message.Bounced,
            Message.Rejected,
            Message.Suspended,
        )
    )

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {delivery_queue} ("
            " message_id TEXT PRIMARY KEY,"
            " account_id {bigint} NOT NULL,"
            " stream TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " recipient TEXT NOT NULL,"
            " domain TEXT NOT NULL,"
            " format TEXT NOT NULL,"
            " head TEXT NOT NULL,"
            " body TEXT NOT NULL,"
            " accepted_at {ts} NOT NULL,"
            " version {bigint} NOT NULL,"
            " attempts INTEGER NOT NULL DEFAULT 0,"
            " due_at {ts},"
            " lease_until {ts},"
            " leased_by TEXT)"
        )
        yield "CREATE INDEX IF NOT EXISTS {index:delivery_queue_due} ON {delivery_queue} (due_at)"

    def carry_over(self, live: SqlDatabase, fresh: SqlDatabase, cursor: Any) -> None:
        """Leases are not in the log: a rebuild keeps the workers' leases on the rows that
        reflect the same event (same version) as the live row they leased, so no message
        being delivered falls due again. Where the log has moved on (an outcome recorded,
        not yet settled) the rebuilt row is right without it."""
        statement = fresh.prepare(
            "UPDATE {delivery_queue} AS f SET lease_until = o.lease_until,"
            " leased_by = o.leased_by FROM __live__ AS o"
            " WHERE o.message_id = f.message_id AND o.version = f.version"
            " AND o.leased_by IS NOT NULL"
        )
        cursor.execute(statement.replace("__live__", live.prepare("{delivery_queue}")))

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        # Messages accepted in this batch are followed in memory, in log order, with the
        # rules the statements below apply (a replay's batches hold most messages' whole
        # lives): one insert of what is left of them, nothing for those already done.
        accepted: dict[str, list[Any]] = {}
        due, retries, done, held = [], [], [], []
        for _, e in events:
            message_id = str(e.originator_id)
            version = e.originator_version
            row = accepted.get(message_id)
            if isinstance(e, Message.Accepted):
                accepted[message_id] = [
                    message_id,
                    e.account_id,
                    e.stream,
                    e.sender,
                    e.recipient,
                    _route_domain(domain_of(e.recipient)),
                    e.format,
                    e.head,
                    e.body,
                    stored_time(e.timestamp),
                    version,
                    None,  # due_at
                    0,  # attempts
                ]
            elif isinstance(e, Message.Queued):
                if row is None:
                    due.append((stored_time(e.timestamp), version, message_id))
                elif row[_DUE] is None:
                    row[_DUE], row[_VERSION] = stored_time(e.timestamp), version
            elif isinstance(e, Message.Suspended):
                if row is None:
                    held.append((stored_time(e.next_check_at), version, message_id, version))
                elif row[_VERSION] < version:
                    row[_DUE], row[_VERSION] = stored_time(e.next_check_at), version
            elif isinstance(e, Message.SoftBounced):
                at = stored_time(e.next_attempt_at)
                if row is None:
                    retries.append((at, e.attempt, version, message_id, version))
                elif row[_VERSION] < version:
                    row[_DUE], row[_ATTEMPTS], row[_VERSION] = at, e.attempt, version
            elif row is None:  # Delivered, Bounced, Rejected
                done.append((message_id,))
            else:
                del accepted[message_id]
        db.insert(
            cursor,
            "delivery_queue",
            INSERT_COLUMNS,
            list(accepted.values()),
            "ON CONFLICT DO NOTHING",
        )
        db.execute_each(
            cursor,
            due,
            (("due_at", "timestamptz"), ("version", "bigint"), ("message_id", "text")),
            sqlite="UPDATE {delivery_queue} SET due_at = ?, version = ? "
            "WHERE message_id = ? AND due_at IS NULL",
            postgres="UPDATE {delivery_queue} AS q SET due_at = v.due_at, version = v.version "
            "FROM {rows} WHERE q.message_id = v.message_id AND q.due_at IS NULL",
        )
        _reschedule(db, cursor, retries)
        _hold(db, cursor, held)
        _remove(db, cursor, done)


@lru_cache(maxsize=4096)
def _route_domain(domain: str) -> str:
    """The domain the MX lookup is for (recipient domains repeat: gmail.com, ...)."""
    return ascii_domain(domain) or domain


CLAIM_POSTGRES = (
    "UPDATE {delivery_queue} SET lease_until = ?, leased_by = ? WHERE message_id IN ("
    " SELECT message_id FROM {delivery_queue}"
    " WHERE due_at <= ? AND (lease_until IS NULL OR lease_until < ?)"
    " ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED)"
    " RETURNING message_id, account_id, stream, sender, recipient, domain, format, head, body,"
    " accepted_at, version, attempts"
)
CLAIM_SQLITE = CLAIM_POSTGRES.replace(" FOR UPDATE SKIP LOCKED", "")


def claim(
    db: SqlDatabase, worker: str, now: datetime, limit: int, lease: timedelta
) -> list[QueuedMessage]:
    """Lease up to `limit` due messages to `worker` until `now + lease`, oldest due first."""
    statement = db.prepare(CLAIM_POSTGRES if db.dialect == "postgres" else CLAIM_SQLITE)
    at = stored_time(now)
    with db.transaction() as cursor:
        cursor.execute(statement, (stored_time(now + lease), worker, at, at, limit))
        rows = cursor.fetchall()
    return [_queued(row) for row in rows]


Retry = tuple[str, datetime, int, int]  # message id, next attempt, attempts so far, version


def settle(db: SqlDatabase, finished: list[str], retries: list[Retry]) -> None:
    """What a worker knows before the projector does: delivered or bounced messages leave the
    queue, soft-bounced ones wait until their next attempt (`(id, due, attempts, version)`)."""
    with db.transaction() as cursor:
        _remove(db, cursor, [(m,) for m in finished])
        _reschedule(
            db,
            cursor,
            [
                (stored_time(due), attempts, version, m, version)
                for m, due, attempts, version in retries
            ],
        )


def _remove(db: SqlDatabase, cursor: Any, rows: list[tuple[str]]) -> None:
    """Delivered or bounced: `(message_id,)` rows leave the queue."""
    db.execute_each(
        cursor,
        rows,
        (("message_id", "text"),),
        sqlite="DELETE FROM {delivery_queue} WHERE message_id = ?",
        postgres="DELETE FROM {delivery_queue} AS q USING {rows} WHERE q.message_id = v.message_id",
    )


def _hold(db: SqlDatabase, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    """Suspended: `(next check, version, message_id, version)` rows wait, unleased, without
    counting a delivery attempt, unless the row already reflects a later event."""
    db.execute_each(
        cursor,
        [row[:3] for row in rows] if db.dialect == "postgres" else rows,
        (("due_at", "timestamptz"), ("version", "bigint"), ("message_id", "text")),
        sqlite="UPDATE {delivery_queue} SET due_at = ?, version = ?, lease_until = NULL,"
        " leased_by = NULL WHERE message_id = ? AND version < ?",
        postgres="UPDATE {delivery_queue} AS q SET due_at = v.due_at, version = v.version,"
        " lease_until = NULL, leased_by = NULL FROM {rows}"
        " WHERE q.message_id = v.message_id AND q.version < v.version",
    )


def _reschedule(db: SqlDatabase, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
    """Soft-bounced: `(due, attempts, version, message_id, version)` rows wait, unleased, for
    their next attempt, unless the row already reflects a later event."""
    db.execute_each(
        cursor,
        [row[:4] for row in rows] if db.dialect == "postgres" else rows,
        (
            ("due_at", "timestamptz"),
            ("attempts", "integer"),
            ("version", "bigint"),
            ("message_id", "text"),
        ),
        sqlite="UPDATE {delivery_queue} SET due_at = ?, attempts = ?, version = ?, "
        "lease_until = NULL, leased_by = NULL WHERE message_id = ? AND version < ?",
        postgres="UPDATE {delivery_queue} AS q SET due_at = v.due_at, attempts = v.attempts, "
        "version = v.version, lease_until = NULL, leased_by = NULL FROM {rows} "
        "WHERE q.message_id = v.message_id AND q.version < v.version",
    )


def release(db: SqlDatabase, worker: str, message_ids: list[str]) -> None:
    """Give `worker`'s leases back without an outcome (shutting down): due again at once."""
    with db.transaction() as cursor:
        db.execute_each(
            cursor,
            [(m, worker) for m in message_ids],
            (("message_id", "text"), ("worker", "text")),
            sqlite="UPDATE {delivery_queue} SET lease_until = NULL, leased_by = NULL "
            "WHERE message_id = ? AND leased_by = ?",
            postgres="UPDATE {delivery_queue} AS q SET lease_until = NULL, leased_by = NULL "
            "FROM {rows} WHERE q.message_id = v.message_id AND q.leased_by = v.worker",
        )


def renew(
    db: SqlDatabase, worker: str, message_ids: list[str], now: datetime, lease: timedelta
) -> None:
    """Extend `worker`'s leases on messages it still holds (waiting for a connection or a rate)."""
    until = stored_time(now + lease)
    with db.transaction() as cursor:
        db.execute_each(
            cursor,
            [(until, m, worker) for m in message_ids],
            (("lease_until", "timestamptz"), ("message_id", "text"), ("worker", "text")),
            sqlite="UPDATE {delivery_queue} SET lease_until = ? "
            "WHERE message_id = ? AND leased_by = ?",
            postgres="UPDATE {delivery_queue} AS q SET lease_until = v.lease_until FROM {rows} "
            "WHERE q.message_id = v.message_id AND q.leased_by = v.worker",
        )


def pending(db: SqlDatabase) -> int:
    """How many messages are in the queue (due or not)."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(db.prepare("SELECT count(*) AS n FROM {delivery_queue}"))
        row = cursor.fetchone()
    return int(row["n"] if isinstance(row, dict) else row[0])


def _queued(row: Any) -> QueuedMessage:
    values = dict(row) if not isinstance(row, dict) else row
    accepted_at = values["accepted_at"]
    if isinstance(accepted_at, str):
        accepted_at = datetime.fromisoformat(accepted_at)
    return QueuedMessage(
        message_id=values["message_id"],
        account_id=int(values["account_id"]),
        stream=values["stream"],
        sender=values["sender"],
        recipient=values["recipient"],
        domain=values["domain"],
        format=values["format"],
        head=values["head"],
        body=values["body"],
        accepted_at=accepted_at,
        version=int(values["version"]),
        attempts=int(values["attempts"]),
    )
