"""The audit log: every control-plane change as an activity entry (spec §3.4).

Token issued, reset or deleted; domain added, verified, changed, rotated or deleted;
suppression added or removed; account opened. Each entry names the actor (an API token, an
operator at the command line, or Postline itself), the resource and, where fields changed, the
changes. Later events of a resource do not repeat its name, so the read model remembers the
names of the resources it has seen (`audit_resources`).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.accounts import Account, ApiToken
from domain.activity import SYSTEM, Actor
from domain.sending_domains import SendingDomain
from domain.suppressions import Suppression
from domain.webhooks import Webhook, redacted_changes, redacted_url
from projections.times import api_time, stored_time

_ENCODER = msgspec.json.Encoder()
PAGE_SIZE = 100

ENTRY_COLUMNS = (
    ("position", "bigint"),
    ("account_id", "bigint"),
    ("event", "text"),
    ("description", "text"),
    ("actor", "text"),
    ("resource", "text"),
    ("changes", "text"),
    ("created_at", "timestamptz"),
)
RESOURCE_COLUMNS = (
    ("aggregate_id", "text"),
    ("account_id", "bigint"),
    ("type", "text"),
    ("resource_id", "text"),
    ("name", "text"),
)


# The names of resources seen, for the events that do not repeat them.
RESOURCE_DDL = (
    "CREATE TABLE IF NOT EXISTS {resources} ("
    " aggregate_id TEXT PRIMARY KEY,"
    " account_id {bigint} NOT NULL,"
    " type TEXT NOT NULL,"
    " resource_id TEXT NOT NULL,"
    " name TEXT NOT NULL)"
)


@dataclass(frozen=True)
class _Resource:
    account_id: int
    type: str
    id: str
    name: str


class AuditLog:
    """The audit-log read model."""

    name = "audit_log"
    tables = ("audit_log", "audit_resources")
    topics = frozenset(
        get_topic(kind)
        for kind in (
            Account.Opened,
            ApiToken.Issued,
            ApiToken.Reset,
            ApiToken.Revoked,
            SendingDomain.DomainAdded,
            SendingDomain.DomainVerified,
            SendingDomain.VerificationLost,
            SendingDomain.SettingsChanged,
            SendingDomain.DkimKeysChanged,
            SendingDomain.DomainDeleted,
            Suppression.Suppressed,
            Suppression.Resuppressed,
            Suppression.Reactivated,
            Webhook.Created,
            Webhook.Changed,
            Webhook.Paused,
            Webhook.SecretRotated,
            Webhook.Deleted,
        )
    )

    def schema(self) -> Iterable[str]:
        yield (
            "CREATE TABLE IF NOT EXISTS {audit_log} ("
            " position {bigint} PRIMARY KEY,"
            " account_id {bigint} NOT NULL,"
            " event TEXT NOT NULL,"
            " description TEXT NOT NULL,"
            " actor TEXT NOT NULL,"
            " resource TEXT NOT NULL,"
            " changes TEXT,"
            " created_at {ts} NOT NULL)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:audit_log_account}"
            " ON {audit_log} (account_id, position)"
        )
        yield RESOURCE_DDL.replace("{resources}", "{audit_resources}")

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        rows = [
            (
                position,
                entry.account_id,
                entry.event,
                entry.description,
                _ENCODER.encode(entry.actor).decode(),
                _ENCODER.encode(entry.resource).decode(),
                _ENCODER.encode(entry.changes).decode() if entry.changes else None,
                stored_time(entry.at),
            )
            for position, entry in activities(db, cursor, events, "audit_resources")
        ]
        db.insert(cursor, "audit_log", ENTRY_COLUMNS, rows, "ON CONFLICT DO NOTHING")


@dataclass(frozen=True, slots=True)
class Activity:
    """One audit-log entry, as made from one event."""

    account_id: int
    event: str  # activity_log.<resource type>.<action>
    description: str
    actor: Actor
    resource: dict[str, str]
    changes: dict[str, Any] | None
    at: datetime

    def payload(self) -> dict[str, Any]:
        """The audit-log webhook's event (spec §3.4)."""
        payload = {
            "event": self.event,
            "description": self.description,
            "actor": self.actor,
            "resource": self.resource,
            "timestamp": int(self.at.timestamp()),
        }
        if self.changes:
            payload["changes"] = self.changes
        return payload


def activities(
    db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]], resources: str
) -> list[tuple[int, Activity]]:
    """The entries `events` make, remembering resource names in the table `resources` (of
    `RESOURCE_DDL`'s shape) for the events that do not repeat them."""
    known = _known(db, cursor, resources, {str(e.originator_id) for _, e in events})
    new: dict[str, _Resource] = {}
    made = []
    for position, e in events:
        key = str(e.originator_id)
        resource = _introduces(e)
        if resource is not None:
            known[key] = new[key] = resource
        resource = known.get(key)
        if resource is None:
            continue  # (a resource from before the audit log knew it)
        action, description, changes = _describe(e, resource)
        made.append(
            (
                position,
                Activity(
                    resource.account_id,
                    f"activity_log.{resource.type}.{action}",
                    description,
                    _actor(e),
                    {"id": resource.id, "type": resource.type, "name": resource.name},
                    changes,
                    e.timestamp,
                ),
            )
        )
    db.insert(
        cursor,
        resources,
        RESOURCE_COLUMNS,
        [(k, r.account_id, r.type, r.id, r.name) for k, r in new.items()],
        "ON CONFLICT (aggregate_id) DO NOTHING",
    )
    return made


def _known(db: SqlDatabase, cursor: Any, table: str, keys: set[str]) -> dict[str, _Resource]:
    if not keys:
        return {}
    marks = ", ".join(["?"] * len(keys))
    cursor.execute(
        db.prepare(
            "SELECT aggregate_id, account_id, type, resource_id, name FROM {"  # noqa: S608
            + table
            + f"}} WHERE aggregate_id IN ({marks})"
        ),
        sorted(keys),
    )
    return {
        row["aggregate_id"]: _Resource(
            int(row["account_id"]), row["type"], row["resource_id"], row["name"]
        )
        for row in cursor.fetchall()
    }


def _introduces(e: Any) -> _Resource | None:
    """The resource an event creates, if it creates one."""
    if isinstance(e, Account.Opened):
        return _Resource(e.account_id, "account", str(e.account_id), e.name)
    if isinstance(e, ApiToken.Issued):
        return _Resource(e.account_id, "api_token", str(e.token_id), e.name)
    if isinstance(e, SendingDomain.DomainAdded):
        return _Resource(e.account_id, "sending_domain", str(e.domain_id), e.name)
    if isinstance(e, Suppression.Suppressed):
        return _Resource(e.account_id, "suppression", str(e.originator_id), e.email)
    if isinstance(e, Webhook.Created):
        url = redacted_url(e.settings["url"])
        return _Resource(e.account_id, "webhook", str(e.webhook_id), url)
    return None


def _describe(e: Any, r: _Resource) -> tuple[str, str, dict[str, Any] | None]:
    """(action, description, changes) of one event about resource `r`."""
    if isinstance(e, Account.Opened):
        return "created", f"opened the account {r.name}", None
    if isinstance(e, ApiToken.Issued):
        changes = {"resources": {"from": None, "to": e.resources}}
        changes["expires_at"] = {"from": None, "to": _time(e.expires_at)}
        return "created", f"created the API token {r.name}", changes
    if isinstance(e, ApiToken.Reset):
        changes = {"successor_id": {"from": None, "to": e.successor}}
        changes["expires_at"] = {"from": None, "to": _time(e.expires_at)}
        return "reset", f"reset the API token {r.name}", changes
    if isinstance(e, ApiToken.Revoked):
        return "deleted", f"deleted the API token {r.name}", None
    if isinstance(e, SendingDomain.DomainAdded):
        return "created", f"added the sending domain {r.name}", None
    if isinstance(e, SendingDomain.DomainVerified):
        changes = {"dns_verified": {"from": False, "to": True}}
        return "verified", f"verified the sending domain {r.name}", changes
    if isinstance(e, SendingDomain.VerificationLost):
        changes = {"dns_verified": {"from": True, "to": False}}
        failing = ", ".join(e.failing)
        return "verification_lost", f"{r.name} lost its verification ({failing})", changes
    if isinstance(e, SendingDomain.SettingsChanged):
        # (events from before changes were recorded have none)
        return "updated", f"changed the settings of {r.name}", getattr(e, "changes", None)
    if isinstance(e, SendingDomain.DkimKeysChanged):
        if any(key.get("pending") for key in e.dkim_keys):
            return "dkim_rotation_started", f"started a DKIM key rotation for {r.name}", None
        return "dkim_key_switched", f"{r.name} signs with its new DKIM key", None
    if isinstance(e, SendingDomain.DomainDeleted):
        return "deleted", f"deleted the sending domain {r.name}", None
    if isinstance(e, Suppression.Suppressed | Suppression.Resuppressed):
        return "created", f"suppressed {r.name} ({e.type})", None
    if isinstance(e, Suppression.Reactivated):
        return "deleted", f"removed {r.name} from the suppression list", None
    if isinstance(e, Webhook.Created):
        return "created", f"created a webhook to {r.name}", None
    if isinstance(e, Webhook.Changed):
        return "updated", f"changed the webhook to {r.name}", redacted_changes(e.changes)
    if isinstance(e, Webhook.Paused):
        return "paused", f"paused the webhook to {r.name}: {e.reason}", None
    if isinstance(e, Webhook.SecretRotated):
        return "secret_rotated", f"gave the webhook to {r.name} a new signing secret", None
    if isinstance(e, Webhook.Deleted):
        return "deleted", f"deleted the webhook to {r.name}", None
    raise AssertionError(f"not an audited event: {type(e).__name__}")


def _actor(e: Any) -> Actor:
    """Who made the change; events from before actors were recorded name what they can."""
    found = getattr(e, "actor", None)
    if found:
        return found
    if isinstance(e, ApiToken.Issued):
        return {"name": e.created_by}
    if isinstance(e, ApiToken.Revoked):
        return {"name": e.by}
    return SYSTEM


def _time(value: datetime | None) -> str | None:
    return None if value is None else api_time(value)


def list_entries(
    db: SqlDatabase,
    account_id: int,
    *,
    before: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[dict[str, Any]], int | None]:
    """The account's entries, newest first, and the cursor of the next page (or None)."""
    where, args = ["account_id = ?"], [account_id]
    if before is not None:
        where.append("position < ?")
        args.append(before)
    if since is not None:
        where.append("created_at >= ?")
        args.append(stored_time(since))
    if until is not None:
        where.append("created_at <= ?")
        args.append(stored_time(until))
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare(
                "SELECT * FROM {audit_log} WHERE "  # noqa: S608
                + " AND ".join(where)
                + " ORDER BY position DESC LIMIT ?"
            ),
            [*args, limit + 1],
        )
        rows = cursor.fetchall()
    entries = [_entry(row) for row in rows[:limit]]
    return entries, (entries[-1]["id"] if len(rows) > limit else None)


def _entry(row: Any) -> dict[str, Any]:
    created = row["created_at"]
    moment = datetime.fromisoformat(created) if isinstance(created, str) else created
    entry = {
        "id": int(row["position"]),
        "event": row["event"],
        "description": row["description"],
        "actor": msgspec.json.decode(row["actor"]),
        "resource": msgspec.json.decode(row["resource"]),
        "timestamp": int(moment.timestamp()),
        "created_at": api_time(moment),
    }
    if row["changes"]:
        entry["changes"] = msgspec.json.decode(row["changes"])
    return entry
