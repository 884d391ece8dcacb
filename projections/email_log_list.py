"""Listing email logs: the filters of `GET /api/email_logs` as SQL, newest first, by cursor.

A page ends with a `next_page_cursor`, the id of its last message; the next page starts after
that message in (`sent_at`, `message_id`) order, so messages accepted meanwhile do not shift
the pages."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from adapters.sql import SqlDatabase
from domain.log_filters import Filter, InvalidFilter, LogQuery
from projections.email_logs import JOIN_DOMAINS, summary
from projections.times import stored_time

PAGE_SIZE = 50
MILLISECOND = timedelta(milliseconds=1)

_COLUMNS = {
    "to": "l.recipient",
    "from": "l.sender",
    "subject": "l.subject",
    "email_service_provider_response": "l.provider_response",
    "recipient_mx": "l.recipient_mx",
    "status": "l.status",
    "clicks_count": "l.clicks_count",
    "opens_count": "l.opens_count",
    "client_ip": "l.client_ip",
    "sending_ip": "l.sending_ip",
    "email_service_provider": "l.email_service_provider",
    "category": "l.category",
    "sending_domain_id": "COALESCE(d.domain_id, 0)",
    "sending_stream": "l.stream",
}
_COMPARE = {"equal": "=", "greater_than": ">", "less_than": "<"}


@dataclass(frozen=True)
class Page:
    messages: list[dict[str, Any]]
    total_count: int
    next_page_cursor: str | None


def list_messages(
    db: SqlDatabase,
    account_id: int,
    query: LogQuery,
    *,
    domains: frozenset[int] | None = None,
    search_after: str | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """One page of the account's messages matching `query` (only those sent from `domains`,
    unless None); InvalidFilter for a cursor that names no message of the account."""
    where, args = ["l.account_id = ?"], [account_id]
    if domains is not None:
        where.append(f"d.domain_id IN ({', '.join(['?'] * len(domains)) or 'NULL'})")
        args.extend(sorted(domains))
    # The API shows times to the millisecond and the bounds include what it shows: a sent_at
    # copied from an answer finds its own message.
    if query.sent_after is not None:
        where.append("l.sent_at >= ?")
        args.append(stored_time(_millisecond(query.sent_after)))
    if query.sent_before is not None:
        where.append("l.sent_at < ?")
        args.append(stored_time(_millisecond(query.sent_before) + MILLISECOND))
    for condition in query.filters:
        clause, values = _condition(condition)
        where.append(clause)
        args.extend(values)
    sql_where = " WHERE " + " AND ".join(where)
    with db.transaction(commit=False) as cursor:
        cursor.execute(db.prepare("SELECT COUNT(*) AS n" + JOIN_DOMAINS + sql_where), args)
        total = int(cursor.fetchone()["n"])
        page_where, page_args = sql_where, list(args)
        if search_after is not None:
            cursor.execute(
                db.prepare(
                    "SELECT sent_at FROM {email_logs} WHERE message_id = ? AND account_id = ?"
                ),
                (search_after, account_id),
            )
            after = cursor.fetchone()
            if after is None:
                raise InvalidFilter(f"search_after: there is no message {search_after}")
            page_where += " AND (l.sent_at < ? OR (l.sent_at = ? AND l.message_id < ?))"
            page_args += [after["sent_at"], after["sent_at"], search_after]
        cursor.execute(
            db.prepare(
                "SELECT l.*, COALESCE(d.domain_id, 0) AS domain_id"
                + JOIN_DOMAINS
                + page_where
                + " ORDER BY l.sent_at DESC, l.message_id DESC LIMIT ?"
            ),
            [*page_args, limit + 1],
        )
        rows = cursor.fetchall()
    more = len(rows) > limit
    messages = [summary(row) for row in rows[:limit]]
    return Page(messages, total, messages[-1]["message_id"] if more else None)


def _condition(condition: Filter) -> tuple[str, list[Any]]:
    """One filter as an SQL condition and its arguments."""
    op, values = condition.operator, list(condition.values)
    if condition.field == "events":
        marks = ", ".join(["?"] * len(values))
        # Only `?` markers are formatted in; the values are arguments.
        exists = (
            "EXISTS (SELECT 1 FROM {email_log_events} AS h WHERE h.message_id = l.message_id"  # noqa: S608
            " AND h.event_type IN (" + marks + "))"
        )
        return (exists if op == "include_event" else f"NOT {exists}"), values
    column = _COLUMNS[condition.field]
    if op == "empty":
        return f"({column} IS NULL OR {column} = '')", []
    if op == "not_empty":
        return f"({column} IS NOT NULL AND {column} <> '')", []
    if op in _COMPARE:
        return "(" + " OR ".join(f"{column} {_COMPARE[op]} ?" for _ in values) + ")", values
    if op.startswith("ci_"):
        column, values, op = f"LOWER({column})", [str(v).lower() for v in values], op[3:]
    if op in ("contain", "not_contain"):
        # LIKE with the wildcards in the value escaped: "contains" means the text itself.
        patterns = ["%" + _escape_like(str(v)) + "%" for v in values]
        matches = "(" + " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for _ in values) + ")"
        if op == "contain":
            return matches, patterns
        return f"({column} IS NULL OR NOT {matches})", patterns
    marks = ", ".join(["?"] * len(values))
    if op == "equal":
        return f"{column} IN ({marks})", values
    return f"({column} IS NULL OR {column} NOT IN ({marks}))", values


def _millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
