"""The SendingDomain aggregate: verification follows the required records."""

import uuid
from datetime import UTC, datetime

import pytest

from domain.sending_domains import SendingDomain, signing_key

NOW = datetime(2026, 11, 25, tzinfo=UTC)
REQUIRED = {"spf", "dkim1"}


def domain() -> SendingDomain:
    return SendingDomain(
        id=uuid.uuid4(),
        domain_id=1,
        account_id=1,
        name="example.org",
        verification_token="t",
        dkim_keys=[],
    )


def kinds(aggregate: SendingDomain) -> list[str]:
    return [type(e).__name__ for e in aggregate.collect_events()]


def results(**statuses: str) -> list[dict[str, str]]:
    return [{"key": k, "status": v} for k, v in statuses.items()]


def test_verified_once_when_every_required_record_passes_then_lost_once() -> None:
    d = domain()
    d.record_check(results(spf="pass", dkim1="missing", dmarc="pass"), REQUIRED, NOW)
    d.record_check(results(spf="pass", dkim1="pass", tracking="missing"), REQUIRED, NOW)
    d.record_check(results(spf="pass", dkim1="pass"), REQUIRED, NOW)
    assert d.dns_verified
    d.record_check(results(spf="fail", dkim1="pass"), REQUIRED, NOW)
    d.record_check(results(spf="fail", dkim1="fail"), REQUIRED, NOW)
    assert not d.dns_verified
    assert kinds(d) == [
        "DomainAdded",
        "DnsChecked",
        "DnsChecked",
        "DomainVerified",
        "DnsChecked",
        "DnsChecked",
        "VerificationLost",
        "DnsChecked",
    ]


def test_a_failed_lookup_neither_verifies_nor_unverifies() -> None:
    d = domain()
    d.record_check(results(spf="network_error", dkim1="pass"), REQUIRED, NOW)
    assert not d.dns_verified
    d.record_check(results(spf="pass", dkim1="pass"), REQUIRED, NOW)
    d.record_check(results(spf="network_error", dkim1="network_error"), REQUIRED, NOW)
    assert d.dns_verified  # the resolver was down: that proves nothing about the records


def test_settings_change_only_known_names_and_only_when_different() -> None:
    d = domain()
    d.change_settings({"open_tracking_enabled": True})  # already so: no event
    d.change_settings({"open_tracking_enabled": False})
    with pytest.raises(ValueError, match="unknown setting"):
        d.change_settings({"colour": True})
    assert kinds(d) == ["DomainAdded", "SettingsChanged"]
    assert d.settings["open_tracking_enabled"] is False


def test_a_rotated_key_signs_once_its_record_passes() -> None:
    d = domain()
    d.dkim_keys = [
        {"selector": "pl1", "public": "A"},
        {"selector": "pl2", "public": "B"},
    ]
    assert d.rotate_dkim({"selector": "", "public": "C"}) == "pl2"
    assert d.rotate_dkim({"selector": "", "public": "D"}) == "pl2"  # restarted, still pending
    assert signing_key(d.dkim_keys)["public"] == "A"
    assert [k["pending"] for k in d.dkim_keys] == [False, True]
    d.record_check(results(dkim1="pass", dkim2="fail"), REQUIRED, NOW)
    assert signing_key(d.dkim_keys)["public"] == "A"
    # a pass judged against the old key (a check that raced the rotation) switches nothing
    stale = [{"key": "dkim2", "status": "pass", "found": ["v=DKIM1; k=rsa; p=B"]}]
    d.record_check(results(dkim1="pass") + stale, REQUIRED, NOW)
    assert signing_key(d.dkim_keys)["public"] == "A"
    published = [{"key": "dkim2", "status": "pass", "found": ['"v=DKIM1; k=rsa; " "p=D"']}]
    d.record_check(results(dkim1="pass") + published, REQUIRED, NOW)
    assert signing_key(d.dkim_keys) == {
        "selector": "pl2",
        "public": "D",
        "signs": True,
        "pending": False,
    }
    assert d.rotate_dkim({"selector": "", "public": "E"}) == "pl1"  # the next one replaces pl1
