"""Sending stats: counters per account, UTC day, sending domain, stream, category and mailbox
provider, and the queries behind `GET /api/stats` (rates and definitions: domain/stats.py).

Three tables, all built from the log alone, so `postline replay` rebuilds them exactly:

- `stats_counters`: one row per (account, day, domain id, stream, category, provider) with the
  day's counts (sent, delivered, bounced, unique opens, unique clicks, spam complaints), added
  to with upserts.
- `stats_messages`: one row per message with what its later events need: the day it counts
  as sent on, its dimensions, whether it still counts as sent, and whether it was opened or
  clicked already (only the first open and the first click count).
- `stats_domains`: the sending domains (added, deleted), so that a message is bound to the
  domain id its sender's domain had when it was accepted. The log orders a domain's events
  before the mail sent from it, so the binding is exact and survives a domain deleted and
  added again under a new id: its statistics stay with the old id (spec §0, "statistics
  preserved for deleted domains"), which resolving names at query time could not do.

A message counts as sent on its acceptance day, under an unknown provider (`''`) until the
recipient's server answers (its `Delivered` or `Bounced` names the provider), then under that
provider; a `Rejected` message stops counting. Category `''` is "none", domain id 0 "no
sending domain of the account" (only with the development sender policy `any`); grouped
answers leave those out, as they have no value to report.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from eventsourcing.utils import get_topic

from adapters.sql import SqlDatabase
from domain.addresses import comparable_domain, domain_of
from domain.message import Message
from domain.sending_domains import SendingDomain
from domain.stats import Counts, esp_name

COUNTS = ("sent", "delivered", "bounced", "opened", "clicked", "spam")
DIMENSIONS = (
    ("account_id", "bigint"),
    ("day", "text"),
    ("domain_id", "bigint"),
    ("stream", "text"),
    ("category", "text"),
    ("esp", "text"),
)
COUNTER_COLUMNS = (*DIMENSIONS, *((name, "integer") for name in COUNTS))
MESSAGE_COLUMNS = (
    ("message_id", "text"),
    *DIMENSIONS,
    ("sent", "integer"),
    ("opened", "integer"),
    ("clicked", "integer"),
)
# Grouped answers: the path's name -> the column it groups by.
GROUPS = {
    "domains": "domain_id",
    "categories": "category",
    "email_service_providers": "esp",
    "date": "day",
}
_LOAD_CHUNK = 500
_SENT, _DELIVERED, _BOUNCED, _OPENED, _CLICKED, _SPAM = range(len(COUNTS))
_OUTCOMES = (Message.Delivered, Message.Bounced)
_FOLLOW_UPS = (*_OUTCOMES, Message.Rejected, Message.Opened, Message.Clicked, Message.Complained)


@dataclass(slots=True)
class _Message:
    account_id: int
    day: str
    domain_id: int
    stream: str
    category: str
    esp: str
    sent: bool
    opened: bool
    clicked: bool

    def key(self, day: str) -> tuple[Any, ...]:
        return (self.account_id, day, self.domain_id, self.stream, self.category, self.esp)


def _day(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


class Stats:
    """The stats read model."""

    name = "stats"
    tables = ("stats_counters", "stats_messages", "stats_domains")
    topics = frozenset(
        get_topic(kind)
        for kind in (
            Message.Accepted,
            Message.Rejected,
            Message.Delivered,
            Message.Bounced,
            Message.Opened,
            Message.Clicked,
            Message.Complained,
            SendingDomain.DomainAdded,
            SendingDomain.DomainDeleted,
        )
    )

    def schema(self) -> Iterable[str]:
        dimensions = (
            " account_id {bigint} NOT NULL,"
            " day TEXT NOT NULL,"
            " domain_id {bigint} NOT NULL,"
            " stream TEXT NOT NULL,"
            " category TEXT NOT NULL,"
            " esp TEXT NOT NULL,"
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {stats_counters} ("
            + dimensions
            + "".join(f" {name} INTEGER NOT NULL," for name in COUNTS)
            + " PRIMARY KEY (account_id, day, domain_id, stream, category, esp))"
        )
        flags = " sent INTEGER NOT NULL, opened INTEGER NOT NULL, clicked INTEGER NOT NULL)"
        yield "CREATE TABLE IF NOT EXISTS {stats_messages} (message_id TEXT PRIMARY KEY," + (
            dimensions + flags
        )
        yield (
            "CREATE TABLE IF NOT EXISTS {stats_domains} ("
            " domain_id {bigint} PRIMARY KEY,"
            " aggregate_id TEXT NOT NULL,"
            " account_id {bigint} NOT NULL,"
            " name TEXT NOT NULL,"
            " deleted INTEGER NOT NULL)"
        )
        yield (
            "CREATE INDEX IF NOT EXISTS {index:stats_domains_account}"
            " ON {stats_domains} (account_id, name)"
        )

    def apply(self, db: SqlDatabase, cursor: Any, events: list[tuple[int, Any]]) -> None:
        new = {str(e.originator_id) for _, e in events if isinstance(e, Message.Accepted)}
        later = {str(e.originator_id) for _, e in events if isinstance(e, _FOLLOW_UPS)}
        messages = _load_messages(db, cursor, sorted(later - new))
        accounts = {e.account_id for _, e in events if isinstance(e, Message.Accepted)}
        live = _live_domains(db, cursor, accounts)  # (account, name) -> (domain id, aggregate)
        deltas: dict[tuple[Any, ...], list[int]] = {}
        touched: set[str] = set()

        def count(message: _Message, day: str, which: int, by: int = 1) -> None:
            deltas.setdefault(message.key(day), [0] * len(COUNTS))[which] += by

        for _, e in events:
            if isinstance(e, SendingDomain.DomainAdded):
                _add_domain(db, cursor, e)
                live[(e.account_id, e.name)] = (e.domain_id, str(e.originator_id))
                continue
            if isinstance(e, SendingDomain.DomainDeleted):
                aggregate = str(e.originator_id)
                cursor.execute(
                    db.prepare("UPDATE {stats_domains} SET deleted = 1 WHERE aggregate_id = ?"),
                    (aggregate,),
                )
                for key, (_, owner) in list(live.items()):
                    if owner == aggregate:
                        del live[key]
                continue
            message_id = str(e.originator_id)
            if isinstance(e, Message.Accepted):
                sender_domain = comparable_domain(domain_of(e.sender))
                message = _Message(
                    account_id=e.account_id,
                    day=_day(e.timestamp),
                    domain_id=live.get((e.account_id, sender_domain), (0, ""))[0],
                    stream=e.stream,
                    category=e.category or "",
                    esp="",
                    sent=True,
                    opened=False,
                    clicked=False,
                )
                messages[message_id] = message
                touched.add(message_id)
                count(message, message.day, _SENT)
                continue
            found = messages.get(message_id)
            if found is None:  # (its acceptance is not in the log: nothing to count it under)
                continue
            message = found
            touched.add(message_id)
            day = _day(e.timestamp)
            if isinstance(e, Message.Rejected):
                if message.sent:
                    count(message, message.day, _SENT, -1)
                    message.sent = False
            elif isinstance(e, _OUTCOMES):
                provider = esp_name(e.mailbox_provider)
                if provider and not message.esp:  # the provider is known: move its send there
                    if message.sent:
                        count(message, message.day, _SENT, -1)
                    message.esp = provider
                    if message.sent:
                        count(message, message.day, _SENT)
                delivered = isinstance(e, Message.Delivered)
                count(message, day, _DELIVERED if delivered else _BOUNCED)
            elif isinstance(e, Message.Opened):
                if not message.opened:
                    message.opened = True
                    count(message, day, _OPENED)
            elif isinstance(e, Message.Clicked):
                if not message.clicked:
                    message.clicked = True
                    count(message, day, _CLICKED)
            elif isinstance(e, Message.Complained):
                count(message, day, _SPAM)

        # New messages apart: a rebuild loads those in bulk (see SqlDatabase.insert).
        for part in (sorted(touched & new), sorted(touched - new)):
            db.insert(
                cursor,
                "stats_messages",
                MESSAGE_COLUMNS,
                [_message_row(message_id, messages[message_id]) for message_id in part],
                "ON CONFLICT (message_id) DO UPDATE SET esp = excluded.esp, sent = excluded.sent,"
                " opened = excluded.opened, clicked = excluded.clicked",
            )
        db.insert(
            cursor,
            "stats_counters",
            COUNTER_COLUMNS,
            [(*key, *counts) for key, counts in sorted(deltas.items()) if any(counts)],
            "ON CONFLICT (account_id, day, domain_id, stream, category, esp) DO UPDATE SET "
            + ", ".join(f"{name} = {{stats_counters}}.{name} + excluded.{name}" for name in COUNTS),
        )


def _message_row(message_id: str, m: _Message) -> tuple[Any, ...]:
    return (
        message_id,
        *m.key(m.day),
        int(m.sent),
        int(m.opened),
        int(m.clicked),
    )


def _load_messages(db: SqlDatabase, cursor: Any, ids: Sequence[str]) -> dict[str, _Message]:
    found: dict[str, _Message] = {}
    for start in range(0, len(ids), _LOAD_CHUNK):
        where, values = db.one_of("message_id", ids[start : start + _LOAD_CHUNK])
        statement = db.prepare("SELECT * FROM {stats_messages} WHERE " + where)  # noqa: S608
        cursor.execute(statement, values)
        for row in cursor.fetchall():
            found[row["message_id"]] = _Message(
                account_id=int(row["account_id"]),
                day=row["day"],
                domain_id=int(row["domain_id"]),
                stream=row["stream"],
                category=row["category"],
                esp=row["esp"],
                sent=bool(row["sent"]),
                opened=bool(row["opened"]),
                clicked=bool(row["clicked"]),
            )
    return found


def _live_domains(
    db: SqlDatabase, cursor: Any, accounts: set[int]
) -> dict[tuple[int, str], tuple[int, str]]:
    if not accounts:
        return {}
    marks = ", ".join("?" * len(accounts))
    cursor.execute(
        db.prepare(
            "SELECT domain_id, aggregate_id, account_id, name FROM {stats_domains}"  # noqa: S608
            f" WHERE deleted = 0 AND account_id IN ({marks})"
        ),
        sorted(accounts),
    )
    return {
        (int(r["account_id"]), r["name"]): (int(r["domain_id"]), r["aggregate_id"])
        for r in cursor.fetchall()
    }


def _add_domain(db: SqlDatabase, cursor: Any, e: Any) -> None:
    cursor.execute(
        db.prepare(
            "INSERT INTO {stats_domains} (domain_id, aggregate_id, account_id, name, deleted)"
            " VALUES (?, ?, ?, ?, 0) ON CONFLICT (domain_id) DO NOTHING"
        ),
        (e.domain_id, str(e.originator_id), e.account_id, e.name),
    )


@dataclass(frozen=True, slots=True)
class StatsQuery:
    """Which stats: a range of UTC days (both included) and optional filters (None: all)."""

    start: date
    end: date
    domain_ids: frozenset[int] | None = None
    streams: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    providers: frozenset[str] | None = None  # the API's names (domain.stats.esp_name)


def account_domains(db: SqlDatabase, account_id: int) -> set[int]:
    """The ids of every sending domain the account has had, deleted ones too."""
    with db.transaction(commit=False) as cursor:
        cursor.execute(
            db.prepare("SELECT domain_id FROM {stats_domains} WHERE account_id = ?"),
            (account_id,),
        )
        return {int(row["domain_id"]) for row in cursor.fetchall()}


def stats(db: SqlDatabase, account_id: int, query: StatsQuery) -> Counts:
    """The account's counts over the query's days and filters."""
    rows = _select(db, account_id, query, None)
    return rows[0][1] if rows else Counts()


def grouped_stats(
    db: SqlDatabase, account_id: int, query: StatsQuery, group: str
) -> list[tuple[Any, Counts]]:
    """The account's counts per value of `group` (a key of GROUPS), in the value's order;
    values with nothing counted, and messages without a value (no category, ...), left out."""
    return [(value, counts) for value, counts in _select(db, account_id, query, group) if counts]


def _select(
    db: SqlDatabase, account_id: int, query: StatsQuery, group: str | None
) -> list[tuple[Any, Counts]]:
    where = ["account_id = ?", "day >= ?", "day <= ?"]
    params: list[Any] = [account_id, query.start.isoformat(), query.end.isoformat()]
    for column, values in (
        ("domain_id", query.domain_ids),
        ("stream", query.streams),
        ("category", query.categories),
        ("esp", query.providers),
    ):
        if values is not None:
            if not values:
                return []
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(sorted(values))
    sums = ", ".join(f"SUM({name}) AS {name}" for name in COUNTS)
    column = GROUPS[group] if group else None
    if column is not None:
        where.append(f"{column} <> ?")
        params.append(0 if column == "domain_id" else "")
        statement = (
            f"SELECT {column} AS value, {sums} FROM {{stats_counters}}"  # noqa: S608
            f" WHERE {' AND '.join(where)} GROUP BY {column} ORDER BY {column}"
        )
    else:
        statement = f"SELECT {sums} FROM {{stats_counters}} WHERE {' AND '.join(where)}"  # noqa: S608
    with db.transaction(commit=False) as cursor:
        cursor.execute(db.prepare(statement), params)
        rows = cursor.fetchall()
    return [
        (row["value"] if column else None, Counts(*(int(row[name] or 0) for name in COUNTS)))
        for row in rows
    ]
