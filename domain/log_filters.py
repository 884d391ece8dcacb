"""The email-log list's filters: `filters[field][operator]` and `filters[field][value]`.

The query-string shape is the API's (spec §1.9, a deepObject): `filters[to][operator]=ci_equal`
with `filters[to][value]=a@x` or, for several values (OR-ed), `filters[to][value][]=a@x&...`;
the two dates are plain `filters[sent_after]=<ISO 8601>`. Filters on different fields are
AND-ed. Unknown fields are ignored (as the API documents); a known field with an operator or
value it cannot take is an error, not silently "no filter".
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

TEXT_CI = ("ci_equal", "ci_not_equal", "ci_contain", "ci_not_contain")
EXACT = ("equal", "not_equal")
NUMERIC = ("equal", "greater_than", "less_than")
STATUSES = ("delivered", "not_delivered", "enqueued", "opted_out")
EVENTS = (
    "delivery",
    "open",
    "click",
    "bounce",
    "spam",
    "unsubscribe",
    "soft_bounce",
    "reject",
    "suspension",
)
STREAMS = ("transactional", "bulk")


@dataclass(frozen=True)
class Field:
    """What one filterable field accepts."""

    operators: tuple[str, ...]
    kind: str = "text"  # "text", "int" or "choice"
    choices: tuple[str, ...] = ()


FIELDS: dict[str, Field] = {
    "to": Field(TEXT_CI),
    "from": Field(TEXT_CI),
    "subject": Field((*TEXT_CI, "empty", "not_empty")),
    "email_service_provider_response": Field(TEXT_CI),
    "recipient_mx": Field(TEXT_CI),
    "status": Field(EXACT, "choice", STATUSES),
    "events": Field(("include_event", "not_include_event"), "choice", EVENTS),
    "clicks_count": Field(NUMERIC, "int"),
    "opens_count": Field(NUMERIC, "int"),
    "client_ip": Field((*EXACT, "contain", "not_contain")),
    "sending_ip": Field((*EXACT, "contain", "not_contain")),
    "email_service_provider": Field(EXACT),
    "category": Field(EXACT),
    "sending_domain_id": Field(EXACT, "int"),
    "sending_stream": Field(EXACT, "choice", STREAMS),
}
ALIASES = {"domain_id": "sending_domain_id"}  # the name the API reference uses
VALUELESS = ("empty", "not_empty")
_WHOLE = re.compile(r"-?[0-9]{1,18}")  # (64-bit: what the databases hold)


class InvalidFilter(ValueError):
    """A filter the list cannot apply; the message names it."""


@dataclass(frozen=True)
class Filter:
    """One field's condition: `values` are OR-ed (for a negative operator: none may match)."""

    field: str
    operator: str
    values: tuple[str | int, ...]


@dataclass(frozen=True)
class LogQuery:
    """The filters of one list request."""

    filters: tuple[Filter, ...] = ()
    sent_after: datetime | None = None
    sent_before: datetime | None = None


def parse_filters(params: Iterable[tuple[str, str]]) -> LogQuery:
    """Read `filters[...]` query parameters (others are not looked at)."""
    operators: dict[str, str] = {}
    values: dict[str, list[str]] = {}
    dates: dict[str, str] = {}
    for key, value in params:
        if not key.startswith("filters["):
            continue
        parts = key[len("filters") :].replace("]", "").split("[")[1:]
        name = ALIASES.get(parts[0], parts[0]) if parts else ""
        if name in ("sent_after", "sent_before") and parts[1:] in ([], ["value"]):
            dates[name] = value
        elif name in FIELDS and parts[1:] == ["operator"]:
            operators[name] = value
        elif name in FIELDS and parts[1:] in (["value"], ["value", ""]):
            values.setdefault(name, []).append(value)
    filters = tuple(_filter(name, operators.get(name), values.get(name, [])) for name in FIELDS)
    return LogQuery(
        tuple(f for f in filters if f is not None),
        _date("sent_after", dates.get("sent_after")),
        _date("sent_before", dates.get("sent_before")),
    )


def _filter(name: str, operator: str | None, raw: list[str]) -> Filter | None:
    field = FIELDS[name]
    if operator is None:
        if raw:
            raise InvalidFilter(f"filters[{name}] has a value but no operator")
        return None
    if operator not in field.operators:
        raise InvalidFilter(
            f"filters[{name}][operator] must be one of {', '.join(field.operators)}"
        )
    if operator in VALUELESS:
        return Filter(name, operator, ())
    if not raw:
        raise InvalidFilter(f"filters[{name}][value] is missing")
    if field.kind == "int":
        if not all(_WHOLE.fullmatch(v) for v in raw):
            raise InvalidFilter(f"filters[{name}][value] must be a whole number")
        return Filter(name, operator, tuple(int(v) for v in raw))
    if field.kind == "choice" and (wrong := [v for v in raw if v not in field.choices]):
        raise InvalidFilter(
            f"filters[{name}][value] {wrong[0]!r} is not one of {', '.join(field.choices)}"
        )
    return Filter(name, operator, tuple(raw))


def _date(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidFilter(f"filters[{name}] must be an ISO 8601 time, not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
