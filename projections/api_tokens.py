"""API tokens: one row per token, as the token API lists them (never a secret or a digest)."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.accounts import ApiToken
from projections.times import api_time, stored_time

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class ApiTokens:
    """The API-tokens read model."""

    name = "api_tokens"
    tables = ("api_tokens",)
    topics = frozenset(
        get_topic(kind) for kind in (ApiToken.Issued, ApiToken.Reset, ApiToken.Revoked)
    )

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {api_tokens} ("
            " token_id {bigint} PRIMARY KEY,"
            " aggregate_id TEXT NOT NULL UNIQUE,"
            " account_id {bigint} NOT NULL,"
            " name TEXT NOT NULL,"
            " last_4_digits TEXT NOT NULL,"
            " created_by TEXT NOT NULL,"
            " resources TEXT NOT NULL,"
            " expires_at {ts},"
            " successor {bigint},"
            " revoked INTEGER NOT NULL,"
            " created_at {ts} NOT NULL)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:api_tokens_account}"
            " ON {api_tokens} (account_id, token_id)"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        for _, e in events:
            if isinstance(e, ApiToken.Issued):
                expires_at = getattr(e, "expires_at", None)  # absent from early tokens
                cursor.execute(
                    db.prepare(
                        "INSERT INTO {api_tokens} (token_id, aggregate_id, account_id, name,"
                        " last_4_digits, created_by, resources, expires_at, revoked, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (token_id) DO NOTHING"
                    ),
                    (
                        e.token_id,
                        str(e.originator_id),
                        e.account_id,
                        e.name,
                        e.last_4_digits,
                        e.created_by,
                        _ENCODER.encode(e.resources).decode(),
                        stored_time(expires_at) if expires_at else None,
                        stored_time(e.timestamp),
                    ),
                )
                continue
            if isinstance(e, ApiToken.Reset):
                statement = "UPDATE {api_tokens} SET successor = ?, expires_at = ?"
                values: tuple[Any, ...] = (e.successor, stored_time(e.expires_at))
            else:  # Revoked
                statement, values = "UPDATE {api_tokens} SET revoked = 1", ()
            cursor.execute(
                db.prepare(statement + " WHERE aggregate_id = ?"), (*values, str(e.originator_id))
            )


def list_tokens(db: SqlDatabase, account_id: int, now: datetime) -> list[dict[str, Any]]:
    """The account's tokens that still work, oldest first."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT * FROM {api_tokens} WHERE account_id = ? AND revoked = 0"
                " AND (expires_at IS NULL OR expires_at > ?) ORDER BY token_id"
            ),
            (account_id, stored_time(now)),
        )
        return [_row(row) for row in cursor.fetchall()]


def _row(row: Any) -> dict[str, Any]:
    values = dict(row)
    values["resources"] = _DECODER.decode(values["resources"])
    return values


def token_view(row: dict[str, Any]) -> dict[str, Any]:
    """A row (or a token as a row) in the API's shape (the SDK's `ApiToken`)."""
    expires_at = row.get("expires_at")
    return {
        "id": int(row["token_id"]),
        "name": row["name"],
        "last_4_digits": row["last_4_digits"],
        "created_by": row["created_by"],
        "expires_at": api_time(expires_at) if expires_at else None,
        "resources": row["resources"],
    }


def row_of(token: ApiToken) -> dict[str, Any]:
    """A token aggregate as a read-model row (when the read model has not caught up yet)."""
    return {
        "token_id": token.token_id,
        "name": token.name,
        "last_4_digits": token.last_4_digits,
        "created_by": token.created_by,
        "expires_at": token.expires_at,
        "resources": token.resources,
    }
