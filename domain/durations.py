"""Durations and rates as operators write them in policy files: `5m`, `4h`, `100/s`, `1,000/h`."""

import re
from datetime import timedelta

_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_RATE = re.compile(r"([\d,_]+)\s*/\s*([a-z]+)")


def _unit(name: str) -> int | None:
    return _UNITS.get(name) or _UNITS.get(name.removesuffix("s"))


def parse_duration(text: str) -> timedelta:
    """`90s`, `5m`, `4h`, `5d`, or a combination such as `1h30m`."""
    cleaned = text.strip().lower().replace(" ", "")
    total = 0.0
    position = 0
    for match in _DURATION.finditer(cleaned):
        unit = _unit(match.group(2))
        if match.start() != position or unit is None:
            break
        total += float(match.group(1)) * unit
        position = match.end()
    if position != len(cleaned) or not cleaned:
        raise ValueError(f"{text!r} is not a duration (try 30s, 5m, 4h or 5d)")
    return timedelta(seconds=total)


def parse_rate(text: str) -> tuple[int, float]:
    """`100/s`, `1,000/h`, `10_000/d`, `1/minute` -> (count, period in seconds)."""
    match = _RATE.fullmatch(text.strip().lower())
    unit = _unit(match.group(2)) if match else None
    if match is None or unit is None:
        raise ValueError(f"{text!r} is not a rate (try 100/s, 600/min, 1000/h or 10000/d)")
    count = int(match.group(1).replace(",", "").replace("_", ""))
    if count <= 0:
        raise ValueError(f"{text!r}: the count must be positive")
    return count, float(unit)
