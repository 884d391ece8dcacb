"""Email logs: one row per message and its event history (`GET /api/email_logs/{id}`)."""

from collections.abc import Iterable
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.message import Message
from projections.times import api_time, stored_time

_ENCODER = msgspec.json.Encoder()


LOG_COLUMNS = (
    ("message_id", "text"),
    ("account_id", "bigint"),
    ("status", "text"),
    ("stream", "text"),
    ("source", "text"),
    ("sender", "text"),
    ("recipient", "text"),
    ("subject", "text"),
    ("category", "text"),
    ("custom_variables", "text"),
    ("client_ip", "text"),
    ("sent_at", "timestamptz"),
    ("size", "bigint"),
    ("format", "text"),
    ("head", "text"),
    ("body", "text"),
)
HISTORY_COLUMNS = (
    ("message_id", "text"),
    ("position", "bigint"),
    ("event_type", "text"),
    ("created_at", "timestamptz"),
    ("details", "text"),
)


class EmailLogs:
    """The email-log read model."""

    name = "email_logs"
    tables = ("email_log_events", "email_logs")
    topics = frozenset(
        get_topic(kind)
        for kind in (
            Message.Accepted,
            Message.Rejected,
            Message.Suspended,
            Message.SoftBounced,
            Message.Delivered,
            Message.Bounced,
            Message.Unsubscribed,
            Message.Complained,
        )
    )

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
        logs, history = [], []
        statuses: dict[str, str] = {}  # message id -> its latest status in this batch
        for position, e in events:
            if not isinstance(e, Message.Accepted):
                message_id = str(e.originator_id)
                kind, details = _outcome(e)
                history.append((message_id, position, kind, stored_time(e.timestamp), details))
                if kind in ("unsubscribe", "spam"):
                    statuses[message_id] = "opted_out"
                elif kind not in ("soft_bounce", "suspension"):
                    statuses[message_id] = "delivered" if kind == "delivery" else "not_delivered"
                continue
            message_id = str(e.originator_id)
            at = stored_time(e.timestamp)
            logs.append(
                (
                    message_id,
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
                    at,
                    e.size,
                    e.format,
                    e.head,
                    e.body,
                )
            )
            details = _ENCODER.encode({"source": e.source, "client_ip": e.client_ip}).decode()
            history.append((message_id, position, "sending", at, details))
        db.insert(cursor, "email_logs", LOG_COLUMNS, logs, "ON CONFLICT (message_id) DO NOTHING")
        db.insert(cursor, "email_log_events", HISTORY_COLUMNS, history, "ON CONFLICT DO NOTHING")
        db.update(cursor, "email_logs", "message_id", "status", list(statuses.items()))


def _outcome(e: Any) -> tuple[str, str]:
    """The history entry of a delivery attempt, in the API's words (event type, details)."""
    if isinstance(e, Message.Rejected):
        return "reject", _ENCODER.encode({"reject_reason": e.reason}).decode()
    if isinstance(e, Message.Suspended):
        return "suspension", _ENCODER.encode({"reason": e.reason}).decode()
    if isinstance(e, Message.Unsubscribed):
        return "unsubscribe", _ENCODER.encode({"web_ip_address": e.ip}).decode()
    if isinstance(e, Message.Complained):
        return "spam", _ENCODER.encode({"spam_feedback_type": e.feedback_type}).decode()
    details: dict[str, Any] = {
        "sending_ip": e.sending_ip,
        "recipient_mx": e.mx,
        "email_service_provider": e.mailbox_provider,
    }
    if isinstance(e, Message.Delivered):
        return "delivery", _ENCODER.encode(details).decode()
    details["email_service_provider_status"] = e.enhanced_code or (str(e.code) if e.code else None)
    details["email_service_provider_response"] = e.response
    details["bounce_category"] = e.bounce_category
    kind = "soft_bounce" if isinstance(e, Message.SoftBounced) else "bounce"
    return kind, _ENCODER.encode(details).decode()


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
        "sent_at": api_time(row["sent_at"]),
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
                "created_at": api_time(e["created_at"]),
                "details": msgspec.json.decode(e["details"]),
            }
            for e in events
        ],
    }
