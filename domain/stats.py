"""Sending stats: the counts kept per day and the rates the API reports (spec §1.8, §9).

The rates follow the dashboard's definitions (the first column of the spec's §9 table):

- delivery_rate = deliveries / sent
- bounce_rate = hard bounces / sent
- open_rate = messages opened at least once / sent
- click_rate = messages clicked at least once / delivered
- spam_rate = spam complaints / delivered

"Sent" counts the messages accepted for delivery that were not rejected (a suppressed
recipient, a domain that stayed unverified): mail that left, or is still trying to. Each count
belongs to the UTC day of its own event, so a day's rates compare that day's deliveries, opens
and complaints with that day's sends and deliveries; opens of yesterday's mail can take a rate
above 1. A rate whose denominator is 0 is 0. Rates are rounded to 4 decimal places: a spam
rate's thresholds (0.08 %, 0.1 %) stay apart.
"""

from dataclasses import dataclass
from typing import Any

RATE_DECIMALS = 4

# Mailtrap's email-service-provider names (the API's enum).
ESP_NAMES = (
    "Google",
    "Yahoo",
    "Outlook",
    "Hey",
    "Google Workspace",
    "Zoho Email",
    "ProtonMail",
    "Yandex",
    "iCloud",
    "Office 365",
    "Amazon SES (Simple Email Service)",
    "Proofpoint Email Protection",
    "Mimecast Email Protection",
    "GMX.net",
    "Rackspace",
    "OVH hosted",
    "Linode hosted",
    "GoDaddy",
    "Symantec Email Protection",
    "Barracuda Email Protection",
    "Cisco Email Protection",
    "FastMail",
    "Naver",
    "Seznam",
    "Comcast",
    "Spectrum",
)
# Mailbox-provider names that events recorded before the MTA used the API's spelling
# (domain/policy/shaping.toml) carry.
_API_SPELLING = {
    "Proton Mail": "ProtonMail",
    "Zoho": "Zoho Email",
    "GMX / Web.de": "GMX.net",
    "Fastmail": "FastMail",
}
_BY_FOLDED = {name.casefold(): name for name in ESP_NAMES}


def esp_name(mailbox_provider: str | None) -> str | None:
    """The API's name for a mailbox provider as the MTA names it (`Proton Mail` ->
    `ProtonMail`); names the API has no value for (`Other`, `Mail.ru`, an operator's own)
    stay as they are. None (no answer from a recipient's server yet) stays None."""
    if not mailbox_provider:
        return None
    name = mailbox_provider.strip()
    name = _API_SPELLING.get(name, name)
    return _BY_FOLDED.get(name.casefold(), name)


@dataclass(frozen=True, slots=True)
class Counts:
    """What happened in one slice of the stats (a day, a domain, a category, ...)."""

    sent: int = 0
    delivered: int = 0
    bounced: int = 0
    opened: int = 0  # unique: messages opened for the first time
    clicked: int = 0  # unique: messages clicked for the first time
    spam: int = 0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(
            self.sent + other.sent,
            self.delivered + other.delivered,
            self.bounced + other.bounced,
            self.opened + other.opened,
            self.clicked + other.clicked,
            self.spam + other.spam,
        )

    def __bool__(self) -> bool:
        return any((self.sent, self.delivered, self.bounced, self.opened, self.clicked, self.spam))


def rate(count: int, of: int) -> float:
    """`count / of` rounded to RATE_DECIMALS places; 0.0 when `of` is 0."""
    return round(count / of, RATE_DECIMALS) if of > 0 else 0.0


def stats_object(counts: Counts) -> dict[str, Any]:
    """The API's stats object for `counts`."""
    return {
        "delivery_count": counts.delivered,
        "delivery_rate": rate(counts.delivered, counts.sent),
        "bounce_count": counts.bounced,
        "bounce_rate": rate(counts.bounced, counts.sent),
        "open_count": counts.opened,
        "open_rate": rate(counts.opened, counts.sent),
        "click_count": counts.clicked,
        "click_rate": rate(counts.clicked, counts.delivered),
        "spam_count": counts.spam,
        "spam_rate": rate(counts.spam, counts.delivered),
    }
