"""Email logs: one row per message and its event history (`GET /api/email_logs/{id}`)."""

from collections.abc import Iterable
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.addresses import domain_of
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
    ("sender_domain", "text"),
)
ATTEMPT_COLUMNS = (  # the latest delivery attempt's, which the list's filters look at
    ("message_id", "text"),
    ("sending_ip", "text"),
    ("recipient_mx", "text"),
    ("email_service_provider", "text"),
    ("provider_response", "text"),
)
# a message's status (None: unchanged) and latest attempt (`attempt` false: unchanged)
CHANGE_COLUMNS = (
    ("message_id", "text"),
    ("status", "text"),
    *ATTEMPT_COLUMNS[1:],
    ("attempt", "boolean"),
)
COUNT_COLUMNS = (("message_id", "text"), ("opens", "integer"), ("clicks", "integer"))
HISTORY_COLUMNS = (
    ("message_id", "text"),
    ("position", "bigint"),
    ("event_type", "text"),
    ("created_at", "timestamptz"),
    ("details", "text"),
)


_ATTEMPTS = (Message.Delivered, Message.SoftBounced, Message.Bounced)
_STATUS = [name for name, _ in LOG_COLUMNS].index("status")
_NO_ATTEMPT = (None,) * len(ATTEMPT_COLUMNS)
_INSERT_COLUMNS = (
    *LOG_COLUMNS,
    *ATTEMPT_COLUMNS[1:],
    ("opens_count", "integer"),
    ("clicks_count", "integer"),
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
            Message.Opened,
            Message.Clicked,
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
            " sender_domain TEXT NOT NULL,"
            " sending_ip TEXT,"
            " recipient_mx TEXT,"
            " email_service_provider TEXT,"
            " provider_response TEXT,"
            " template_id {bigint},"
            " opens_count INTEGER NOT NULL DEFAULT 0,"
            " clicks_count INTEGER NOT NULL DEFAULT 0)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:email_logs_account_sent}"
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
        attempts: dict[str, tuple[Any, ...]] = {}  # message id -> its latest attempt's details
        counts: dict[str, list[int]] = {}  # message id -> [opens, clicks] in this batch
        for position, e in events:
            if not isinstance(e, Message.Accepted):
                message_id = str(e.originator_id)
                kind, details = _outcome(e)
                history.append((message_id, position, kind, stored_time(e.timestamp), details))
                if kind in ("open", "click"):
                    counts.setdefault(message_id, [0, 0])[kind == "click"] += 1
                    continue
                if kind in ("unsubscribe", "spam"):
                    statuses[message_id] = "opted_out"
                elif kind not in ("soft_bounce", "suspension"):
                    statuses[message_id] = "delivered" if kind == "delivery" else "not_delivered"
                if isinstance(e, _ATTEMPTS):
                    attempts[message_id] = (
                        message_id,
                        e.sending_ip,
                        e.mx,
                        e.mailbox_provider,
                        e.response,
                    )
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
                    domain_of(e.sender).lower(),
                )
            )
            details = _ENCODER.encode({"source": e.source, "client_ip": e.client_ip}).decode()
            history.append((message_id, position, "sending", at, details))
        # Messages accepted in this batch get what its later events say in their rows: one
        # insert instead of an insert and updates (a replay's batches hold most messages' lives).
        rows = [
            (
                *log[:_STATUS],
                statuses.pop(log[0], log[_STATUS]),
                *log[_STATUS + 1 :],
                *attempts.pop(log[0], _NO_ATTEMPT)[1:],
                *counts.pop(log[0], (0, 0)),
            )
            for log in logs
        ]
        db.insert(cursor, "email_logs", _INSERT_COLUMNS, rows, "ON CONFLICT DO NOTHING")
        db.insert(cursor, "email_log_events", HISTORY_COLUMNS, history, "ON CONFLICT DO NOTHING")
        # Messages accepted before: status and latest attempt in one update each (a delivery
        # changes both; two updates would write the row twice).
        changes = [
            (m, statuses.get(m), *attempts.get(m, _NO_ATTEMPT)[1:], m in attempts)
            for m in statuses.keys() | attempts.keys()
        ]
        db.execute_each(
            cursor,
            changes,
            CHANGE_COLUMNS,
            sqlite="UPDATE {email_logs} SET status = COALESCE(?2, status),"
            " sending_ip = CASE WHEN ?7 THEN ?3 ELSE sending_ip END,"
            " recipient_mx = CASE WHEN ?7 THEN ?4 ELSE recipient_mx END,"
            " email_service_provider = CASE WHEN ?7 THEN ?5 ELSE email_service_provider END,"
            " provider_response = CASE WHEN ?7 THEN ?6 ELSE provider_response END"
            " WHERE message_id = ?1",
            postgres="UPDATE {email_logs} AS t SET status = COALESCE(v.status, t.status),"
            " sending_ip = CASE WHEN v.attempt THEN v.sending_ip ELSE t.sending_ip END,"
            " recipient_mx = CASE WHEN v.attempt THEN v.recipient_mx ELSE t.recipient_mx END,"
            " email_service_provider = CASE WHEN v.attempt THEN v.email_service_provider"
            " ELSE t.email_service_provider END,"
            " provider_response = CASE WHEN v.attempt THEN v.provider_response"
            " ELSE t.provider_response END"
            " FROM {rows} WHERE t.message_id = v.message_id",
        )
        db.execute_each(
            cursor,
            [(message_id, opens, clicks) for message_id, (opens, clicks) in counts.items()],
            COUNT_COLUMNS,
            sqlite="UPDATE {email_logs} SET opens_count = opens_count + ?2,"
            " clicks_count = clicks_count + ?3 WHERE message_id = ?1",
            postgres="UPDATE {email_logs} AS t SET opens_count = t.opens_count + v.opens,"
            " clicks_count = t.clicks_count + v.clicks"
            " FROM {rows} WHERE t.message_id = v.message_id",
        )


def _outcome(e: Any) -> tuple[str, str]:
    """The history entry of a delivery attempt, in the API's words (event type, details)."""
    if isinstance(e, Message.Rejected):
        return "reject", _ENCODER.encode({"reject_reason": e.reason}).decode()
    if isinstance(e, Message.Suspended):
        return "suspension", _ENCODER.encode({"reject_reason": e.reason}).decode()
    if isinstance(e, Message.Unsubscribed):
        return "unsubscribe", _ENCODER.encode({"web_ip_address": e.ip}).decode()
    if isinstance(e, Message.Complained):
        return "spam", _ENCODER.encode({"spam_feedback_type": e.feedback_type}).decode()
    if isinstance(e, Message.Opened):
        return "open", _ENCODER.encode({"web_ip_address": e.ip}).decode()
    if isinstance(e, Message.Clicked):
        return "click", _ENCODER.encode({"click_url": e.url, "web_ip_address": e.ip}).decode()
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
            db.prepare(
                "SELECT l.*, COALESCE(d.domain_id, 0) AS domain_id"
                + JOIN_DOMAINS
                + " WHERE l.message_id = ? AND l.account_id = ?"
            ),
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
        **summary(row),
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


def message_source(
    db: SqlDatabase, account_id: int, message_id: str
) -> tuple[str, str, str] | None:
    """A message's format and the blob ids of its head and body; None if not there."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT format, head, body FROM {email_logs}"
                " WHERE message_id = ? AND account_id = ?"
            ),
            (message_id, account_id),
        )
        row = cursor.fetchone()
    return None if row is None else (row["format"], row["head"], row["body"])


# The sending domain's id comes from the domains read model when the log is read: a domain
# added after the mail was sent still shows.
JOIN_DOMAINS = (
    " FROM {email_logs} AS l LEFT JOIN {sending_domains} AS d"
    " ON d.account_id = l.account_id AND d.name = l.sender_domain AND d.deleted = 0"
)


def summary(row: Any) -> dict[str, Any]:
    """A message's fields in the API's shape, without its history (`row` joined with its
    sending domain's id as `domain_id`)."""
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
        "sending_domain_id": int(row["domain_id"]),
        "template_id": row["template_id"],
        "template_variables": {},
        "opens_count": row["opens_count"],
        "clicks_count": row["clicks_count"],
    }
