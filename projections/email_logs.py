"""Email logs: one row per message and its event history (`GET /api/email_logs/{id}`)."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.message import Message

_ENCODER = msgspec.json.Encoder()


def timestamp(value: datetime | str) -> str:
    """ISO 8601 in UTC with millisecond precision, as the API shows it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stored_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class EmailLogs:
    """The email-log read model."""

    name = "email_logs"
    tables = ("email_log_events", "email_logs")
    topics = frozenset({get_topic(Message.Accepted)})

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {email_logs} ("
            " message_id TEXT PRIMARY KEY,"
            " account_id {bigint} NOT NULL,"
            " status TEXT NOT NULL,"
            " stream TEXT NOT NULL,"
            " source TEXT NOT NULL,"
            " sender TEXT NOT NULL,"
            " recipient TEXT NOT NULL,"
            " subject TEXT,"
            " category TEXT,"
            " custom_variables TEXT NOT NULL,"
            " client_ip TEXT,"
            " sent_at {ts} NOT NULL,"
            " size {bigint} NOT NULL,"
            " format TEXT NOT NULL,"
            " head TEXT NOT NULL,"
            " body TEXT NOT NULL,"
            " sending_domain_id {bigint},"
            " template_id {bigint},"
            " opens_count INTEGER NOT NULL DEFAULT 0,"
            " clicks_count INTEGER NOT NULL DEFAULT 0)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS email_logs_account_sent"
            " ON {email_logs} (account_id, sent_at)"
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {email_log_events} ("
            " message_id TEXT NOT NULL,"
            " position {bigint} NOT NULL,"
            " event_type TEXT NOT NULL,"
            " created_at {ts} NOT NULL,"
            " details TEXT NOT NULL,"
            " PRIMARY KEY (message_id, position))"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        accepted = [(position, e) for position, e in events if isinstance(e, Message.Accepted)]
        if not accepted:
            return
        db.insert(
            cursor,
            "INSERT INTO {email_logs} (message_id, account_id, status, stream, source, sender,"
            " recipient, subject, category, custom_variables, client_ip, sent_at, size, format,"
            " head, body)",
            [
                (
                    str(e.originator_id),
                    e.account_id,
                    "enqueued",
                    e.stream,
                    e.source,
                    e.sender,
                    e.recipient,
                    e.subject,
                    e.category,
                    _ENCODER.encode(e.custom_variables).decode(),
                    e.client_ip,
                    _stored_time(e.timestamp),
                    e.size,
                    e.format,
                    e.head,
                    e.body,
                )
                for _, e in accepted
            ],
            "ON CONFLICT (message_id) DO NOTHING",
        )
        db.insert(
            cursor,
            "INSERT INTO {email_log_events}"
            " (message_id, position, event_type, created_at, details)",
            [
                (
                    str(e.originator_id),
                    position,
                    "sending",
                    _stored_time(e.timestamp),
                    _ENCODER.encode({"source": e.source, "client_ip": e.client_ip}).decode(),
                )
                for position, e in accepted
            ],
            "ON CONFLICT DO NOTHING",
        )


def get_message(db: SqlDatabase, account_id: int, message_id: str) -> dict[str, Any] | None:
    """One message of `account_id` with its events, in the API's shape; None if not there."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare("SELECT * FROM {email_logs} WHERE message_id = ? AND account_id = ?"),
            (message_id, account_id),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        cursor.execute(
            db.prepare(
                "SELECT event_type, created_at, details FROM {email_log_events}"
                " WHERE message_id = ? ORDER BY position"
            ),
            (message_id,),
        )
        events = cursor.fetchall()
    return {
        "message_id": row["message_id"],
        "status": row["status"],
        "subject": row["subject"],
        "from": row["sender"],
        "to": row["recipient"],
        "sent_at": timestamp(row["sent_at"]),
        "client_ip": row["client_ip"],
        "category": row["category"],
        "custom_variables": msgspec.json.decode(row["custom_variables"]),
        "sending_stream": row["stream"],
        "sending_domain_id": row["sending_domain_id"] or 0,
        "template_id": row["template_id"],
        "template_variables": {},
        "opens_count": row["opens_count"],
        "clicks_count": row["clicks_count"],
        "raw_message_url": None,
        "events": [
            {
                "event_type": e["event_type"],
                "created_at": timestamp(e["created_at"]),
                "details": msgspec.json.decode(e["details"]),
            }
            for e in events
        ],
    }
