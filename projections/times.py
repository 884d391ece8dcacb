"""Timestamps in read models: fixed-width UTC text, ordered alike by SQLite and PostgreSQL."""

from datetime import UTC, datetime


def stored_time(value: datetime) -> str:
    """Fixed-width ISO 8601 in UTC, so that text comparison orders it (SQLite)."""
    if value.tzinfo is not UTC:  # (events' times are UTC already: no copy for those)
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")


def api_time(value: datetime | str) -> str:
    """ISO 8601 in UTC with millisecond precision, as the API shows it."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
