"""Traffic shaping as data (`domain/policy/shaping.toml`): sites, their limits, providers."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from domain.durations import parse_duration, parse_rate

LIMIT_KEYS = (
    "connection_limit",
    "max_deliveries_per_connection",
    "max_message_rate",
    "max_recipients_per_transaction",
    "idle_timeout",
)
OTHER_PROVIDER = "Other"


class InvalidShaping(ValueError):
    """A shaping file that cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class SitePolicy:
    """Where a recipient domain's mail goes, and how hard to push it."""

    site: str
    provider: str | None
    connection_limit: int
    max_deliveries_per_connection: int
    max_message_rate: tuple[int, float] | None  # (messages, per seconds)
    max_recipients_per_transaction: int
    idle_timeout: timedelta


@dataclass(frozen=True, slots=True)
class _Provider:
    name: str
    mx: re.Pattern[str]
    limits: dict[str, Any]


class Shaping:
    """The shaping table: `site_for(mx_hosts)` and `mailbox_provider(mx_host)`."""

    def __init__(self, *tables: Mapping[str, Any]) -> None:
        """`tables` in order of precedence: an operator's file first, then ours."""
        defaults: dict[str, Any] = {}
        providers: dict[str, dict[str, Any]] = {}
        mailbox: list[tuple[str, re.Pattern[str]]] = []
        for table in reversed(tables):  # later (higher-precedence) tables overwrite
            defaults.update(table.get("default", {}))
            for name, block in table.get("provider", {}).items():
                providers.setdefault(name, {}).update(block)
        for table in tables:  # earlier tables' mailbox providers match first
            for index, entry in enumerate(table.get("mailbox_provider", []), 1):
                try:
                    mailbox.append((str(entry["name"]), re.compile(entry["mx"], re.IGNORECASE)))
                except (KeyError, re.error) as error:
                    raise InvalidShaping(f"mailbox_provider {index}: {error}") from None
        self._defaults = self._checked("default", defaults)
        self._providers = []
        for name, block in providers.items():
            patterns = block.get("mx")
            if not isinstance(patterns, list) or not patterns:
                raise InvalidShaping(f"provider.{name}: 'mx' must be a list of patterns")
            try:
                mx = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
            except re.error as error:
                raise InvalidShaping(f"provider.{name}: {error}") from None
            limits = {k: v for k, v in block.items() if k != "mx"}
            self._checked(f"provider.{name}", {**defaults, **limits})
            self._providers.append(_Provider(name, mx, limits))
        self._mailbox = mailbox

    @staticmethod
    def _checked(where: str, values: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(values) - set(LIMIT_KEYS)
        if unknown:
            raise InvalidShaping(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
        missing = [key for key in LIMIT_KEYS if key not in values]
        if missing:
            raise InvalidShaping(f"{where}: missing {', '.join(missing)}")
        try:
            for key in ("connection_limit", "max_deliveries_per_connection"):
                if int(values[key]) < 1:
                    raise ValueError(f"{key} must be at least 1")
            if int(values["max_recipients_per_transaction"]) < 1:
                raise ValueError("max_recipients_per_transaction must be at least 1")
            if values["max_message_rate"]:
                parse_rate(str(values["max_message_rate"]))
            parse_duration(str(values["idle_timeout"]))
        except ValueError as error:
            raise InvalidShaping(f"{where}: {error}") from None
        return dict(values)

    def site_for(self, mx_hosts: Iterable[str]) -> SitePolicy:
        """The site of a destination with these MX hosts, with its limits."""
        hosts = sorted({host.lower().rstrip(".") for host in mx_hosts})
        provider = next(
            (p for p in self._providers if any(p.mx.search(host) for host in hosts)), None
        )
        values = {**self._defaults, **(provider.limits if provider else {})}
        rate = values["max_message_rate"]
        return SitePolicy(
            site=provider.name if provider else ",".join(hosts),
            provider=provider.name if provider else None,
            connection_limit=int(values["connection_limit"]),
            max_deliveries_per_connection=int(values["max_deliveries_per_connection"]),
            max_message_rate=parse_rate(str(rate)) if rate else None,
            max_recipients_per_transaction=int(values["max_recipients_per_transaction"]),
            idle_timeout=parse_duration(str(values["idle_timeout"])),
        )

    def mailbox_provider(self, mx_host: str) -> str:
        """The mailbox provider's name for the MX host that took the mail."""
        host = mx_host.lower().rstrip(".")
        return next((name for name, mx in self._mailbox if mx.search(host)), OTHER_PROVIDER)
