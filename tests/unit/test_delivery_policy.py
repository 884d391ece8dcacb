"""Retry schedule, traffic shaping and mailbox providers: policy tables that are data."""

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.durations import parse_duration, parse_rate
from domain.shaping import InvalidShaping, Shaping
from engine.policy import retry_schedule, shaping, shipped

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("4h", 14400), ("5d", 432000), ("1h30m", 5400), ("2 min", 120)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/s", (100, 1)),
        ("1,000/h", (1000, 3600)),
        ("10_000/d", (10000, 86400)),
        ("1/minute", (1, 60)),
        ("600/min", (600, 60)),
    ],
)
def test_rates(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "5", "5 parsecs", "m5", "x/s", "10/fortnight", "0/s"])
def test_bad_durations_and_rates_say_what_they_expect(text: str) -> None:
    with pytest.raises(ValueError, match=r"try|must be positive"):
        parse_duration(text) if "/" not in text else parse_rate(text)


def test_default_schedule_retries_ten_times_doubling_to_a_cap() -> None:
    schedule = retry_schedule()
    waits = []
    at = T0
    for attempt in range(1, 20):
        due = schedule.next_attempt(attempt, T0, at, spread=0.5)  # no jitter at 0.5
        if due is None:
            break
        waits.append(due - at)
        at = due
    assert len(waits) == 10  # Mailtrap: a soft bounce is retried 10 more times
    assert waits[:3] == [timedelta(minutes=5), timedelta(minutes=10), timedelta(minutes=20)]
    assert max(waits) == timedelta(hours=4)


def test_jitter_spreads_retries_and_max_age_ends_them() -> None:
    schedule = retry_schedule()
    early = schedule.next_attempt(1, T0, T0, spread=0.0)
    late = schedule.next_attempt(1, T0, T0, spread=0.999)
    assert early == T0 + timedelta(minutes=4)
    assert late is not None
    assert late > T0 + timedelta(minutes=5, seconds=59)
    assert schedule.next_attempt(2, T0, T0 + timedelta(days=5), spread=0.5) is None


def test_operator_retry_file_overrides_key_by_key(tmp_path: Path) -> None:
    path = tmp_path / "retry.toml"
    path.write_text('first_retry = "1m"\nmax_attempts = 3\n')
    schedule = retry_schedule(path)
    assert schedule.first_retry == timedelta(minutes=1)
    assert schedule.max_interval == timedelta(hours=4)  # ours
    assert schedule.next_attempt(3, T0, T0, 0.5) is None


def test_google_hosted_domains_are_one_site_with_googles_limits() -> None:
    table = shaping()
    gmail = table.site_for(["gmail-smtp-in.l.google.com", "alt1.gmail-smtp-in.l.google.com"])
    workspace = table.site_for(["ASPMX.L.GOOGLE.COM."])
    assert gmail.site == workspace.site == "google"
    assert (gmail.connection_limit, gmail.max_deliveries_per_connection) == (5, 50)
    assert gmail.max_message_rate == (100, 1.0)
    other = table.site_for(["mx2.example.com", "mx1.example.com"])
    assert other.site == "mx1.example.com,mx2.example.com"
    assert other.provider is None
    assert (other.connection_limit, other.max_deliveries_per_connection) == (10, 100)
    assert table.site_for(["mta5.am0.yahoodns.net"]).max_deliveries_per_connection == 20


@pytest.mark.parametrize(
    ("mx", "name"),
    [
        ("gmail-smtp-in.l.google.com", "Google"),
        ("aspmx.l.google.com", "Google Workspace"),
        ("example-com.mail.protection.outlook.com", "Office 365"),
        ("hotmail-com.olc.protection.outlook.com", "Outlook"),
        ("mta6.am0.yahoodns.net", "Yahoo"),
        ("mx01.mail.icloud.com", "iCloud"),
        ("mail.protonmail.ch", "ProtonMail"),
        ("mx.example.com", "Other"),
    ],
)
def test_mailbox_providers(mx: str, name: str) -> None:
    assert shaping().mailbox_provider(mx) == name


def test_operator_shaping_merges_over_ours(tmp_path: Path) -> None:
    path = tmp_path / "shaping.toml"
    path.write_text(
        "[default]\nconnection_limit = 2\n"
        '[provider.google]\nmax_message_rate = "10/min"\n'
        '[provider.corp]\nmx = ["\\\\.corp\\\\.example$"]\nconnection_limit = 1\n'
        '[[mailbox_provider]]\nname = "Corp"\nmx = "\\\\.corp\\\\.example$"\n'
    )
    table = shaping(path)
    assert table.site_for(["mx.other.example"]).connection_limit == 2
    google = table.site_for(["aspmx.l.google.com"])
    assert (google.connection_limit, google.max_message_rate) == (5, (10, 60.0))
    corp = table.site_for(["mx.corp.example"])
    assert (corp.site, corp.connection_limit) == ("corp", 1)
    assert table.mailbox_provider("mx.corp.example") == "Corp"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[default]\nconnection_limt = 2\n", "unknown setting"),
        ("[default]\nconnection_limit = 0\n", "at least 1"),
        ('[default]\nmax_message_rate = "fast"\n', "not a rate"),
        ('[provider.x]\nmx = "x"\n', "must be a list"),
    ],
)
def test_bad_shaping_files_say_what_is_wrong(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "shaping.toml"
    path.write_text(text)
    with pytest.raises(InvalidShaping, match=problem):
        Shaping(tomllib.loads(text), shipped("shaping"))
