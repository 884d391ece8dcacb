"""Judging what DNS holds against a sending domain's expected records (domain.dns_records)."""

import pytest

from domain.dns_records import (
    DkimKey,
    DnsSettings,
    expected_records,
    judge,
    normalise,
    setup_instructions,
)

SETTINGS = DnsSettings(spf_mechanism="a:mta.example.net", tracking_host="t.example.net")
RECORDS = {
    r.key: r
    for r in expected_records(
        "example.org",
        "abc123",
        [DkimKey("pl1", "rsa-sha256", "KEY1"), DkimKey("pl2", "rsa-sha256", "KEY2")],
        SETTINGS,
    )
}


def test_the_records_of_a_domain() -> None:
    assert [(r.key, r.type, r.name, r.required) for r in RECORDS.values()] == [
        ("verification", "TXT", "_postline-verification", True),
        ("spf", "TXT", "", True),
        ("dkim1", "TXT", "pl1._domainkey", True),
        ("dkim2", "TXT", "pl2._domainkey", True),
        ("dmarc", "TXT", "_dmarc", True),
        ("link_verification", "CNAME", "mt-link", False),
    ]
    assert RECORDS["spf"].domain == "example.org"
    assert RECORDS["dkim1"].domain == "pl1._domainkey.example.org"
    assert RECORDS["dkim1"].value == "v=DKIM1; k=rsa; p=KEY1"


@pytest.mark.parametrize(
    ("key", "found", "status"),
    [
        ("verification", ["postline-verification=abc123"], "pass"),
        ("verification", ['"postline-verification=ABC123"'], "pass"),  # quoted, any case
        ("verification", ["postline-verification=other"], "fail"),
        ("verification", ["google-site-verification=x"], "missing"),
        ("spf", ["v=spf1 mx +a:MTA.example.net -all"], "pass"),
        ("spf", ["v=spf1 mx -all"], "fail"),
        ("spf", ["v=spf1 a:mta.example.net ~all", "v=spf1 mx ~all"], "fail"),  # two records
        ("spf", [], "missing"),
        ("dkim1", ["v=DKIM1; k=rsa; p=KE Y1"], "pass"),  # whitespace inside p= is ignored
        ("dkim1", ['"v=DKIM1; k=rsa; " "p=KEY1"'], "pass"),  # split into strings
        ("dkim1", ["v=DKIM1; k=rsa; p=KEY2"], "fail"),
        ("dkim1", ["v=DKIM1; k=ed25519; p=KEY1"], "fail"),
        ("dmarc", ["v=DMARC1; p=quarantine"], "pass"),
        ("dmarc", ["v=DMARC1; p=none", "v=DMARC1; p=reject"], "fail"),
        ("link_verification", ["T.example.net."], "pass"),  # case and trailing dot
        ("link_verification", ["elsewhere.example"], "fail"),
        ("link_verification", [], "missing"),
    ],
)
def test_verdicts(key: str, found: list[str], status: str) -> None:
    assert judge(RECORDS[key], found).status == status


def test_failures_say_what_is_wrong() -> None:
    assert judge(RECORDS["spf"], ["v=spf1 mx -all"]).problem == (
        "the SPF record does not include a:mta.example.net"
    )
    assert judge(RECORDS["link_verification"], ["x.example"]).problem == (
        "points to x.example, not t.example.net"
    )


def test_normalise() -> None:
    assert normalise('"v=spf1  mx" " ~all"') == "v=spf1 mx ~all"
    assert normalise("Host.Example.") == "Host.Example"


def test_setup_instructions_list_every_record() -> None:
    text = setup_instructions("example.org", list(RECORDS.values()))
    for record in RECORDS.values():
        assert f"  name:  {record.domain}\n" in text
        assert f"  value: {record.value}\n" in text
    assert "link_verification (optional)" in text
    assert "dkim1 (required)" in text
