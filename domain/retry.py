"""The retry schedule for soft bounces, as data (`domain/policy/retry.toml`)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from domain.durations import parse_duration


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    first_retry: timedelta
    factor: float
    max_interval: timedelta
    jitter: float
    max_attempts: int
    max_age: timedelta

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "RetrySchedule":
        try:
            schedule = cls(
                first_retry=parse_duration(str(data["first_retry"])),
                factor=float(data["factor"]),
                max_interval=parse_duration(str(data["max_interval"])),
                jitter=float(data["jitter"]),
                max_attempts=int(data["max_attempts"]),
                max_age=parse_duration(str(data["max_age"])),
            )
        except KeyError as error:
            raise ValueError(f"retry schedule: {error.args[0]!r} is missing") from None
        if schedule.factor < 1 or not 0 <= schedule.jitter < 1 or schedule.max_attempts < 1:
            raise ValueError("retry schedule: factor >= 1, 0 <= jitter < 1, max_attempts >= 1")
        return schedule

    def interval(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt, before jitter."""
        grown = self.first_retry * (self.factor ** max(0, attempts - 1))
        return min(grown, self.max_interval)

    def next_attempt(
        self, attempts: int, accepted_at: datetime, now: datetime, spread: float
    ) -> datetime | None:
        """When to try again after `attempts` failed attempts, or None to give up.

        `spread` is a random number in [0, 1) (the caller's, so this stays deterministic).
        """
        if attempts >= self.max_attempts:
            return None
        wait = self.interval(attempts) * (1 + self.jitter * (2 * spread - 1))
        due = now + wait
        if due - accepted_at > self.max_age:
            return None
        return due
