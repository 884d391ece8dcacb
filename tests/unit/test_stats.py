"""Stats arithmetic and provider names (domain/stats.py)."""

import tomllib
from pathlib import Path

from domain.shaping import OTHER_PROVIDER
from domain.stats import ESP_NAMES, Counts, esp_name, rate, stats_object


def test_check_40_rates() -> None:
    counts = Counts(sent=10, delivered=9, bounced=1, opened=6, clicked=3, spam=1)
    assert stats_object(counts) == {
        "delivery_count": 9,
        "delivery_rate": 0.9,
        "bounce_count": 1,
        "bounce_rate": 0.1,
        "open_count": 6,
        "open_rate": 0.6,
        "click_count": 3,
        "click_rate": 0.3333,  # clicked / delivered, 4 decimal places
        "spam_count": 1,
        "spam_rate": 0.1111,  # complaints / delivered
    }


def test_rates_round_to_4_places_are_0_without_a_denominator_and_may_exceed_1() -> None:
    assert rate(2, 3) == 0.6667
    assert rate(1, 1250) == 0.0008  # the spam warning threshold (0.08 %) stays visible
    assert rate(5, 0) == 0.0
    assert rate(3, 1) == 3.0  # opens on a day of yesterday's mail
    nothing_sent = stats_object(Counts(opened=2, clicked=1))
    assert (nothing_sent["open_count"], nothing_sent["open_rate"]) == (2, 0.0)
    assert nothing_sent["click_rate"] == 0.0


def test_counts_add_and_are_false_when_empty() -> None:
    assert Counts(1, 1) + Counts(2, 0, 1) == Counts(3, 1, 1)
    assert not Counts()
    assert Counts(sent=1)


def test_provider_names_in_the_apis_words() -> None:
    assert esp_name("Google") == "Google"
    assert esp_name("Office 365") == "Office 365"
    assert esp_name("Proton Mail") == "ProtonMail"  # as events before the rename say it
    assert esp_name("Zoho") == "Zoho Email"
    assert esp_name("GMX / Web.de") == "GMX.net"
    assert esp_name("Fastmail") == "FastMail"
    assert esp_name("icloud") == "iCloud"  # an operator's file may spell it otherwise
    assert esp_name("Mail.ru") == "Mail.ru"  # no API name: kept as the MTA says it
    assert esp_name(OTHER_PROVIDER) == "Other"
    assert esp_name(None) is None
    assert esp_name("") is None
    assert all(esp_name(name) == name for name in ESP_NAMES)


def test_the_mta_names_providers_as_the_api_does_but_mail_ru() -> None:
    shaping = Path(__file__).resolve().parents[2] / "domain" / "policy" / "shaping.toml"
    names = [entry["name"] for entry in tomllib.loads(shaping.read_text())["mailbox_provider"]]
    assert [name for name in names if name not in ESP_NAMES] == ["Mail.ru"]
