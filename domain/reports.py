"""Reports no read model keeps, computed by replaying the message events of the log.

Each report is an accumulator: `add(event)` for every `Message` event in log order, then
`rows()` for the table. Percentiles come from `statistics.quantiles`. `since`/`until` select
messages by when they were accepted (the bounce report: by when they bounced).
"""

import statistics
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

from domain.addresses import domain_of
from domain.message import Message


class Report:
    """The common part: which messages fall in the window, and what was learnt of them."""

    name = ""
    title = ""
    columns: tuple[str, ...] = ()

    def __init__(self, since: datetime | None = None, until: datetime | None = None) -> None:
        self.since, self.until = since, until
        self._accepted: dict[Any, datetime] = {}  # message id -> when, for those in the window
        self._domains: dict[Any, str] = {}

    def _inside(self, at: datetime) -> bool:
        return (self.since is None or at >= self.since) and (self.until is None or at < self.until)

    def add(self, event: Any) -> None:
        if isinstance(event, Message.Accepted):
            self._domains[event.originator_id] = domain_of(event.sender)
            if self._inside(event.timestamp):
                self._accepted[event.originator_id] = event.timestamp

    def rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError


class DeliveryTimes(Report):
    """Seconds from acceptance to delivery, per mailbox provider."""

    name = "delivery-times"
    title = "Delivery time per mailbox provider (seconds from acceptance)"
    columns = ("mailbox_provider", "delivered", "p50", "p90", "p99", "max")

    def __init__(self, since: datetime | None = None, until: datetime | None = None) -> None:
        super().__init__(since, until)
        self._times: dict[str, list[float]] = defaultdict(list)

    def add(self, event: Any) -> None:
        super().add(event)
        if isinstance(event, Message.Delivered) and event.originator_id in self._accepted:
            took = event.timestamp - self._accepted[event.originator_id]
            self._times[event.mailbox_provider or "Other"].append(took.total_seconds())

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for provider, times in sorted(self._times.items(), key=lambda item: -len(item[1])):
            cuts = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else []
            rows.append(
                {
                    "mailbox_provider": provider,
                    "delivered": len(times),
                    "p50": round(cuts[49] if cuts else times[0], 3),
                    "p90": round(cuts[89] if cuts else times[0], 3),
                    "p99": round(cuts[98] if cuts else times[0], 3),
                    "max": round(max(times), 3),
                }
            )
        return rows


class Bounces(Report):
    """Hard bounces per sending domain, day and bounce category."""

    name = "bounces"
    title = "Bounces per sending domain per day, by category"
    columns = ("day", "domain", "bounce_category", "bounces")

    def __init__(self, since: datetime | None = None, until: datetime | None = None) -> None:
        super().__init__(since, until)
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, event: Any) -> None:
        super().add(event)
        if isinstance(event, Message.Bounced) and self._inside(event.timestamp):
            domain = self._domains.get(event.originator_id, "(unknown)")
            day = event.timestamp.date().isoformat()
            self._counts[(day, domain, event.bounce_category)] += 1

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"day": day, "domain": domain, "bounce_category": category, "bounces": n}
            for (day, domain, category), n in sorted(self._counts.items())
        ]


class Retries(Report):
    """How many temporary failures delivered messages went through first."""

    name = "retries"
    title = "Attempts before delivery"
    columns = ("soft_bounces_first", "messages", "share")

    def __init__(self, since: datetime | None = None, until: datetime | None = None) -> None:
        super().__init__(since, until)
        self._retries: Counter[int] = Counter()

    def add(self, event: Any) -> None:
        super().add(event)
        if isinstance(event, Message.Delivered) and event.originator_id in self._accepted:
            self._retries[max(0, event.attempt - 1)] += 1

    def rows(self) -> list[dict[str, Any]]:
        total = sum(self._retries.values())
        return [
            {"soft_bounces_first": n, "messages": count, "share": round(count / total, 4)}
            for n, count in sorted(self._retries.items())
        ]


REPORTS: dict[str, type[Report]] = {r.name: r for r in (DeliveryTimes, Bounces, Retries)}
