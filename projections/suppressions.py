"""Suppressions: the account's suppression list, as the API lists it and dispatch checks it."""

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.suppressions import Suppression
from projections.times import api_time, stored_time

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()
PAGE = 1000  # the API's page size (spec §1.7)


class Suppressions:
    """The suppression-list read model."""

    name = "suppressions"
    tables = ("suppressions",)
    topics = frozenset(
        get_topic(kind)
        for kind in (Suppression.Suppressed, Suppression.Resuppressed, Suppression.Reactivated)
    )

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {suppressions} ("
            " id TEXT PRIMARY KEY,"
            " account_id {bigint} NOT NULL,"
            " email TEXT NOT NULL,"
            " email_key TEXT NOT NULL,"
            " domain TEXT,"
            " stream TEXT NOT NULL,"
            " type TEXT NOT NULL,"
            " message TEXT NOT NULL,"
            " created_at {ts} NOT NULL,"
            " position {bigint} NOT NULL,"
            " active INTEGER NOT NULL)"
        )
        yield "CREATE INDEX IF NOT EXISTS {index:suppressions_email} ON {suppressions} (email_key)"
        yield (
            "CREATE INDEX IF NOT EXISTS {index:suppressions_account}"
            " ON {suppressions} (account_id, position)"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        for position, e in events:
            key = str(e.originator_id)
            if isinstance(e, Suppression.Suppressed):
                cursor.execute(
                    db.prepare(
                        "INSERT INTO {suppressions} (id, account_id, email, email_key, domain,"
                        " stream, type, message, created_at, position, active)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO NOTHING"
                    ),
                    (
                        key,
                        e.account_id,
                        e.email,
                        e.email.lower(),
                        e.domain,
                        e.stream,
                        e.type,
                        _ENCODER.encode(e.message).decode(),
                        stored_time(e.timestamp),
                        position,
                    ),
                )
            elif isinstance(e, Suppression.Resuppressed):
                cursor.execute(
                    db.prepare(
                        "UPDATE {suppressions} SET type = ?, message = ?, created_at = ?,"
                        " position = ?, active = 1 WHERE id = ?"
                    ),
                    (
                        e.type,
                        _ENCODER.encode(e.message).decode(),
                        stored_time(e.timestamp),
                        position,
                        key,
                    ),
                )
            else:  # Reactivated
                cursor.execute(
                    db.prepare("UPDATE {suppressions} SET active = 0 WHERE id = ?"), (key,)
                )


def matching(
    db: SqlDatabase, cursor: Any, emails: Sequence[str]
) -> dict[tuple[int, str], list[tuple[str | None, str, str]]]:
    """Active suppressions of these addresses: `(account, email_key) -> [(domain, stream,
    type)]`, read with the caller's cursor (dispatch runs inside its projector transaction)."""
    keys = sorted({email.lower() for email in emails})
    found: dict[tuple[int, str], list[tuple[str | None, str, str]]] = {}
    for start in range(0, len(keys), 500):
        where, values = db.one_of("email_key", keys[start : start + 500])
        statement = db.prepare(
            "SELECT account_id, email_key, domain, stream, type FROM {suppressions}"  # noqa: S608
            " WHERE active = 1 AND " + where
        )
        cursor.execute(statement, values)
        for row in cursor.fetchall():
            scope = (row["domain"], row["stream"], row["type"])
            found.setdefault((int(row["account_id"]), row["email_key"]), []).append(scope)
    return found


def list_suppressions(
    db: SqlDatabase,
    account_id: int,
    *,
    email: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    after: str | None = None,
) -> list[dict[str, Any]] | None:
    """Up to a page of the account's active suppressions, oldest first, after the record
    `after` (the `last_id` cursor); None when `after` is not one of the account's records."""
    conditions, values = ["account_id = ?", "active = 1"], [account_id]
    with db.transaction(commit=False) as cursor:
        if after is not None:
            cursor.execute(
                db.prepare("SELECT position FROM {suppressions} WHERE id = ? AND account_id = ?"),
                (after, account_id),
            )
            row = cursor.fetchone()
            if row is None:
                return None
            conditions.append("position > ?")
            values.append(int(row["position"]))
        if email is not None:
            conditions.append("email_key = ?")
            values.append(email.lower())
        if start is not None:
            conditions.append("created_at >= ?")
            values.append(stored_time(start))
        if end is not None:
            conditions.append("created_at <= ?")
            values.append(stored_time(end))
        cursor.execute(
            db.prepare(
                "SELECT * FROM {suppressions} WHERE "  # noqa: S608 - fixed condition texts
                + " AND ".join(conditions)
                + f" ORDER BY position LIMIT {PAGE}"
            ),
            values,
        )
        return [suppression_view(row) for row in cursor.fetchall()]


def find_suppression(db: SqlDatabase, account_id: int, id: str) -> dict[str, Any] | None:
    """One of the account's suppressions (active or not), or None."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare("SELECT * FROM {suppressions} WHERE id = ? AND account_id = ?"),
            (id, account_id),
        )
        row = cursor.fetchone()
    return None if row is None else suppression_view(row)


def suppression_view(row: Any) -> dict[str, Any]:
    """A row in the API's shape (the SDK's `Suppression`)."""
    values = dict(row)
    message = _DECODER.decode(values["message"])
    return {
        "id": values["id"],
        "type": values["type"],
        "created_at": api_time(values["created_at"]),
        "email": values["email"],
        "sending_stream": values["stream"],
        "domain_name": values["domain"],
        **{f"message_{k}": message.get(k) for k in MESSAGE_FIELDS},
    }


MESSAGE_FIELDS = (
    "bounce_category",
    "category",
    "client_ip",
    "created_at",
    "esp_response",
    "esp_server_type",
    "outgoing_ip",
    "recipient_mx_name",
    "sender_email",
    "subject",
)
