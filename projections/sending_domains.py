"""Sending domains: one row per domain, its keys, settings and last DNS check.

Deleted domains keep their row (`deleted = 1`): analytics show them as `<name> (deleted)`, the
API no longer lists them. DKIM private keys are kept sealed, as the events carry them.
"""

from collections.abc import Iterable
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.sending_domains import SETTINGS, SendingDomain
from projections.times import stored_time

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder()


class SendingDomains:
    """The sending-domains read model."""

    name = "sending_domains"
    tables = ("sending_domains",)
    topics = frozenset(
        get_topic(kind)
        for kind in (
            SendingDomain.DomainAdded,
            SendingDomain.DnsChecked,
            SendingDomain.DomainVerified,
            SendingDomain.VerificationLost,
            SendingDomain.SettingsChanged,
            SendingDomain.DomainDeleted,
            SendingDomain.DkimKeysChanged,
        )
    )

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {sending_domains} ("
            " domain_id {bigint} PRIMARY KEY,"
            " aggregate_id TEXT NOT NULL UNIQUE,"
            " account_id {bigint} NOT NULL,"
            " name TEXT NOT NULL,"
            " verification_token TEXT NOT NULL,"
            " dkim_keys TEXT NOT NULL,"
            " settings TEXT NOT NULL,"
            " records TEXT NOT NULL,"
            " checked_at {ts},"
            " dns_verified INTEGER NOT NULL,"
            " dns_verified_at {ts},"
            " deleted INTEGER NOT NULL,"
            " created_at {ts} NOT NULL)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:sending_domains_account} "
            "ON {sending_domains} (account_id, domain_id)"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        for _, e in events:
            key = str(e.originator_id)
            if isinstance(e, SendingDomain.DomainAdded):
                cursor.execute(
                    db.prepare(
                        "INSERT INTO {sending_domains} (domain_id, aggregate_id, account_id, name,"
                        " verification_token, dkim_keys, settings, records, dns_verified,"
                        " deleted, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, '[]', 0, 0, ?)"
                        " ON CONFLICT (domain_id) DO NOTHING"
                    ),
                    (
                        e.domain_id,
                        key,
                        e.account_id,
                        e.name,
                        e.verification_token,
                        _ENCODER.encode(e.dkim_keys).decode(),
                        _ENCODER.encode(SETTINGS).decode(),
                        stored_time(e.timestamp),
                    ),
                )
                continue
            if isinstance(e, SendingDomain.DnsChecked):
                statement = "UPDATE {sending_domains} SET records = ?, checked_at = ?"
                values: tuple[Any, ...] = (
                    _ENCODER.encode(e.records).decode(),
                    stored_time(e.at),
                )
            elif isinstance(e, SendingDomain.DomainVerified):
                statement = "UPDATE {sending_domains} SET dns_verified = 1, dns_verified_at = ?"
                values = (stored_time(e.at),)
            elif isinstance(e, SendingDomain.VerificationLost):
                statement = "UPDATE {sending_domains} SET dns_verified = 0"
                values = ()
            elif isinstance(e, SendingDomain.DkimKeysChanged):
                statement = "UPDATE {sending_domains} SET dkim_keys = ?"
                values = (_ENCODER.encode(e.dkim_keys).decode(),)
            elif isinstance(e, SendingDomain.SettingsChanged):
                statement = "UPDATE {sending_domains} SET settings = ?"
                values = (_ENCODER.encode(e.settings).decode(),)
            else:  # DomainDeleted
                statement = "UPDATE {sending_domains} SET deleted = 1"
                values = ()
            cursor.execute(db.prepare(statement + " WHERE aggregate_id = ?"), (*values, key))


def list_domains(db: SqlDatabase, account_id: int) -> list[dict[str, Any]]:
    """The account's live domains, oldest first."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT * FROM {sending_domains} WHERE account_id = ? AND deleted = 0"
                " ORDER BY domain_id"
            ),
            (account_id,),
        )
        return [_row(row) for row in cursor.fetchall()]


def find_domain(db: SqlDatabase, account_id: int, domain_id: int) -> dict[str, Any] | None:
    """One live domain of the account, or None."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT * FROM {sending_domains}"
                " WHERE domain_id = ? AND account_id = ? AND deleted = 0"
            ),
            (domain_id, account_id),
        )
        row = cursor.fetchone()
    return None if row is None else _row(row)


def live_domains(db: SqlDatabase) -> list[tuple[int, int]]:
    """Every live domain as `(account_id, domain_id)`: what the scheduled check visits."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT account_id, domain_id FROM {sending_domains} WHERE deleted = 0"
                " ORDER BY domain_id"
            )
        )
        return [(int(r["account_id"]), int(r["domain_id"])) for r in cursor.fetchall()]


def verified_domains(db: SqlDatabase) -> list[dict[str, Any]]:
    """Every live, DNS-verified domain (their keys sign outgoing mail)."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT * FROM {sending_domains} WHERE deleted = 0 AND dns_verified = 1"
                " ORDER BY domain_id"
            )
        )
        return [_row(row) for row in cursor.fetchall()]


def domain_names(db: SqlDatabase, account_id: int) -> dict[str, tuple[int, bool]]:
    """The account's live domains: name -> (domain id, DNS-verified)."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT name, domain_id, dns_verified FROM {sending_domains}"
                " WHERE account_id = ? AND deleted = 0"
            ),
            (account_id,),
        )
        return {
            row["name"]: (int(row["domain_id"]), bool(row["dns_verified"]))
            for row in cursor.fetchall()
        }


def _row(row: Any) -> dict[str, Any]:
    values = dict(row)
    for column in ("dkim_keys", "settings", "records"):
        values[column] = _DECODER.decode(values[column])
    values["dns_verified"] = bool(values["dns_verified"])
    return values
