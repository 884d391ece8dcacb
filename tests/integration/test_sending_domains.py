"""Sending domains against a local DNS server whose zone the tests edit."""

import asyncio
from collections.abc import Iterator
from dataclasses import replace

import dkim
import pytest

from adapters.dkim_signing import Signer
from adapters.dns import RecordLookup
from engine.accounts import issue_token, open_account
from engine.domains import (
    DomainRefused,
    add_domain,
    delete_domain,
    domain_view,
    expected,
    get_domain,
    record_check,
    rotate_dkim,
    verified_senders,
)
from engine.errors import Conflict
from engine.runtime import Runtime
from engine.sender_policy import SenderNotAllowed
from projections.email_logs import get_message
from projections.sending_domains import find_domain
from tests.support.dns import LocalDns, Zone, txt_from
from tests.support.live import LiveServer

DOMAIN = "example.org"


@pytest.fixture
def dns_server() -> Iterator[LocalDns]:
    server = LocalDns(Zone(a={"unrelated.example": ["127.0.0.1"]}))
    try:
        yield server
    finally:
        server.stop()


def view(runtime: Runtime, account_id: int, domain_id: int) -> dict:
    runtime.domains.catch_up()
    row = find_domain(runtime.store.db, account_id, domain_id)
    assert row is not None
    return domain_view(row, runtime.domain_config)


def statuses(shown: dict) -> dict[str, str]:
    return {r["key"]: r["status"] for r in shown["dns_records"]}


def publish(zone: Zone, shown: dict, **overrides: str) -> None:
    """Publish every expected record (TXT only here), with `overrides` by key."""
    for record in shown["dns_records"]:
        if record["type"] == "TXT":
            zone.txt[record["domain"]] = overrides.get(record["key"], record["value"])


def test_unchecked_then_missing_then_fail_then_pass_then_lost(
    runtime: Runtime, account: tuple[int, str], dns_server: LocalDns
) -> None:
    account_id, _ = account
    runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, "Example.ORG."
    )
    shown = view(runtime, account_id, domain_id)
    assert shown["domain_name"] == DOMAIN
    assert shown["compliance_status"] == "initial"
    assert set(statuses(shown).values()) == {"unchecked"}
    assert [r["key"] for r in shown["dns_records"]] == [
        "verification",
        "spf",
        "dkim1",
        "dkim2",
        "dmarc",
    ]

    def check() -> dict:
        asyncio.run(runtime.domain_checker.check(account_id, domain_id))
        return view(runtime, account_id, domain_id)

    shown = check()
    assert set(statuses(shown).values()) == {"missing"}
    assert (shown["dns_verified"], shown["compliance_status"]) == (False, "unverified_dns")

    # the SPF record lacks the installation's mechanism: expected against found says so
    publish(dns_server.zone, shown, spf="v=spf1 include:_spf.elsewhere.example -all")
    shown = check()
    spf = next(r for r in shown["dns_records"] if r["key"] == "spf")
    assert spf["status"] == "fail"
    assert spf["found"] == ["v=spf1 include:_spf.elsewhere.example -all"]
    assert "does not include" in spf["problem"]
    assert not shown["dns_verified"]

    # quoted, split into strings and with extra mechanisms: still a pass
    spf_value = next(r["value"] for r in shown["dns_records"] if r["key"] == "spf")
    mechanism = spf_value.split(" ")[1]
    publish(dns_server.zone, shown, spf=f"v=spf1 mx {mechanism.upper()} ~all")
    dns_server.zone.txt["_dmarc." + DOMAIN] = "v=DMARC1; p=reject; rua=mailto:d@example.org"
    shown = check()
    assert set(statuses(shown).values()) == {"pass"}, statuses(shown)
    assert (shown["dns_verified"], shown["compliance_status"]) == (True, "compliant")
    assert shown["dns_verified_at"] is not None

    # a broken DKIM record loses the verification
    dkim1 = next(r for r in shown["dns_records"] if r["key"] == "dkim1")
    dns_server.zone.txt[dkim1["domain"]] = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOC"
    shown = check()
    assert statuses(shown)["dkim1"] == "fail"
    assert (shown["dns_verified"], shown["dns_verified_at"]) == (False, None)


def test_the_scheduler_checks_every_domain(
    runtime: Runtime, account: tuple[int, str], dns_server: LocalDns
) -> None:
    account_id, _ = account
    runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
    runtime.domain_check_interval = 0.2
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, DOMAIN
    )
    publish(dns_server.zone, view(runtime, account_id, domain_id))

    async def until_verified() -> bool:
        await runtime.start_background()
        try:
            for _ in range(100):
                await asyncio.sleep(0.1)
                if (await runtime.run(view, runtime, account_id, domain_id))["dns_verified"]:
                    return True
            return False
        finally:
            await runtime.stop_background()

    assert asyncio.run(until_verified())


def test_names_are_checked_and_unique_until_deleted(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    account_id, _ = account
    config, box = runtime.domain_config, runtime.secrets
    for bad, reason in [
        ("not a domain", "not a valid domain name"),
        ("www.example.org", "without www"),
        ("gmail.com", "public mailbox provider"),
    ]:
        with pytest.raises(DomainRefused, match=reason):
            add_domain(runtime.store, box, config, account_id, bad)
    first = add_domain(runtime.store, box, config, account_id, DOMAIN)
    with pytest.raises(DomainRefused, match="already been added"):
        add_domain(runtime.store, box, config, account_id, DOMAIN)
    # another account may take over a name nobody has proven, not one that is verified
    other = open_account(runtime.store, "Other")
    taken = add_domain(runtime.store, box, config, other, DOMAIN)
    with pytest.raises(DomainRefused, match="already been added"):
        add_domain(runtime.store, box, config, other, DOMAIN)
    delete_domain(runtime.store, other, taken, by="tests")
    delete_domain(runtime.store, account_id, first, by="tests")
    second = add_domain(runtime.store, box, config, account_id, DOMAIN)
    assert second != first
    runtime.domains.catch_up()
    assert find_domain(runtime.store.db, account_id, first) is None  # deleted: gone from the API


def test_dkim_private_keys_are_sealed_and_open_with_the_installation_key(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    account_id, _ = account
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, DOMAIN
    )
    runtime.domains.catch_up()
    row = find_domain(runtime.store.db, account_id, domain_id)
    assert row is not None
    keys = row["dkim_keys"]
    assert [k["selector"] for k in keys] == ["pl1", "pl2"]
    for key in keys:
        assert "PRIVATE KEY" not in key["private"]
        assert runtime.secrets.open(key["private"]).startswith(b"-----BEGIN PRIVATE KEY-----")
    dkim1 = next(r for r in expected(row, runtime.domain_config) if r.key == "dkim1")
    assert dkim1.value == f"v=DKIM1; k=rsa; p={keys[0]['public']}"


def test_another_account_sees_none_of_it(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, owner_token = account
    other = open_account(runtime.store, "Other")
    other_token = issue_token(runtime.store, other, "other", created_by="tests").token
    mine = {"Authorization": f"Bearer {owner_token}"}
    theirs = {"Authorization": f"Bearer {other_token}"}
    base = f"/api/accounts/{owner}/sending_domains"
    created = live.client.post(base, json={"sending_domain": {"domain_name": DOMAIN}}, headers=mine)
    assert created.status_code == 200, created.text
    domain_id = created.json()["id"]
    one = f"{base}/{domain_id}"

    # the other account's token, on the owner's paths and on its own
    for method, path in [
        ("GET", base),
        ("GET", one),
        ("PATCH", one),
        ("DELETE", one),
        ("POST", f"{one}/verify"),
        ("GET", f"/api/accounts/{other}/sending_domains/{domain_id}"),
        ("GET", f"/api/accounts/{other}/sending_domains/{2**70}"),  # beyond 64 bits
        ("DELETE", f"/api/accounts/{other}/sending_domains/{2**70}"),
        ("DELETE", f"/api/accounts/{other}/sending_domains/{domain_id}"),
    ]:
        body = {"sending_domain": {"open_tracking_enabled": False}} if method == "PATCH" else None
        answer = live.client.request(method, path, json=body, headers=theirs)
        assert (answer.status_code, answer.json()) == (404, {"error": "Not Found"}), (method, path)
    listed = live.client.get(f"/api/accounts/{other}/sending_domains", headers=theirs)
    assert listed.json() == {"data": []}
    # and nothing changed
    still = live.client.get(one, headers=mine).json()
    assert (still["open_tracking_enabled"], still["domain_name"]) == (True, DOMAIN)


def test_bad_requests_are_refused_with_the_reason(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, token = account
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/api/accounts/{owner}/sending_domains"
    for body, status, error in [
        ({"sending_domain": {}}, 422, "domain_name is required"),
        ({"nope": 1}, 422, 'the body must be {"sending_domain": {...}}'),
        ({"sending_domain": {"domain_name": "gmail.com"}}, 422, "public mailbox provider"),
    ]:
        answer = live.client.post(base, json=body, headers=headers)
        assert answer.status_code == status
        assert error in answer.json()["error"]
    created = live.client.post(
        base, json={"sending_domain": {"domain_name": DOMAIN}}, headers=headers
    ).json()
    for change, error in [
        ({"open_tracking_enabled": "yes"}, "must be true or false"),
        ({"colour": True}, "unknown setting"),
    ]:
        answer = live.client.patch(
            f"{base}/{created['id']}", json={"sending_domain": change}, headers=headers
        )
        assert (answer.status_code, error in answer.json()["error"]) == (422, True)
    assert live.client.get(base).status_code == 401


def test_a_dkim_rotation_signs_with_the_old_key_until_dns_has_the_new(
    runtime: Runtime, account: tuple[int, str], dns_server: LocalDns, live: LiveServer
) -> None:
    account_id, token = account
    runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, DOMAIN
    )
    shown = view(runtime, account_id, domain_id)
    publish(dns_server.zone, shown)

    def check() -> dict:
        asyncio.run(runtime.domain_checker.check(account_id, domain_id))
        return view(runtime, account_id, domain_id)

    def signs_as() -> str:
        (key,) = verified_senders(runtime.store.db, runtime.secrets).keys
        message = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: s\r\n\r\nHi\r\n"
        signed = Signer([key]).sign(message, DOMAIN)
        assert dkim.verify(signed, dnsfunc=txt_from(dns_server))
        return key.selector

    assert check()["dns_verified"]
    assert signs_as() == "pl1"
    old = {r["key"]: r["value"] for r in shown["dns_records"]}

    rotated = live.client.post(
        f"/api/accounts/{account_id}/sending_domains/{domain_id}/rotate_dkim",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert rotated.status_code == 200, rotated.text
    shown = rotated.json()
    dkim2 = next(r for r in shown["dns_records"] if r["key"] == "dkim2")
    assert dkim2["value"] != old["dkim2"]
    assert (dkim2["status"], dkim2["required"]) == ("fail", False)  # the old key is published
    assert (shown["dkim_signing_selector"], shown["dns_verified"]) == ("pl1", True)

    shown = check()  # DNS still has the old pl2 key: nothing changes, pl1 signs
    assert (shown["dns_verified"], shown["dkim_signing_selector"]) == (True, "pl1")
    assert signs_as() == "pl1"

    publish(dns_server.zone, shown)
    shown = check()
    assert set(statuses(shown).values()) == {"pass"}
    assert all(r["required"] for r in shown["dns_records"])
    assert (shown["dns_verified"], shown["dkim_signing_selector"]) == (True, "pl2")
    assert signs_as() == "pl2"
    # pl1 stays published and required: the next rotation replaces it
    assert next(r for r in shown["dns_records"] if r["key"] == "dkim1")["value"] == old["dkim1"]


def test_setup_instructions_are_mailed_from_the_installations_address(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    account_id, token = account
    headers = {"Authorization": f"Bearer {token}"}
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, DOMAIN
    )
    path = f"/api/accounts/{account_id}/sending_domains/{domain_id}/send_setup_instructions"
    unset = live.client.post(path, json={"email": "dns@example.org"}, headers=headers)
    assert unset.status_code == 422
    assert "POSTLINE_SYSTEM_SENDER" in unset.json()["error"]

    system = "postline@mta.example.net"
    runtime.domain_config = replace(runtime.domain_config, system_sender=system)
    runtime.senders.system_sender = system
    runtime.senders.policy = "verified"  # nobody may send as example.org yet; Postline may
    assert live.client.post(path, json={"email": "nope"}, headers=headers).status_code == 422
    sent = live.client.post(path, json={"email": "dns@example.org"}, headers=headers)
    assert sent.status_code == 204, sent.text
    runtime.email_logs.catch_up()
    with runtime.store.db.transaction(commit=False) as cursor:
        cursor.execute(runtime.store.db.prepare("SELECT message_id FROM {email_logs}"))
        (row,) = cursor.fetchall()
    message = get_message(runtime.store.db, account_id, row["message_id"])
    assert message is not None
    assert (message["from"], message["to"], message["subject"], message["category"]) == (
        system,
        "dns@example.org",
        f"DNS records to publish for {DOMAIN}",
        "setup instructions",
    )
    # the address stays Postline's own: a client cannot send from it, whatever the policy
    runtime.senders.policy = "any"
    refused = live.client.post(
        "/api/send",
        json={
            "from": {"email": system},
            "to": [{"email": "a@example.net"}],
            "subject": "s",
            "text": "t",
        },
        headers=headers,
    )
    assert refused.status_code == 401
    assert "this installation's own address" in refused.json()["errors"][1]
    runtime.senders.policy = "verified"
    # ten calls an hour per account (three made above), then 429
    answers = [
        live.client.post(path, json={"email": "dns@example.org"}, headers=headers).status_code
        for _ in range(8)
    ]
    assert answers == [204] * 7 + [429]
    # the MTA lets Postline's own mail go, and holds the account's unverified domain
    asyncio.run(runtime.senders.check_verified(account_id, system))
    with pytest.raises(SenderNotAllowed):
        asyncio.run(runtime.senders.check_verified(account_id, f"shop@{DOMAIN}"))


def test_a_check_that_raced_a_change_is_not_recorded(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    account_id, _ = account
    config = runtime.domain_config
    domain_id = add_domain(runtime.store, runtime.secrets, config, account_id, DOMAIN)
    looked_up = get_domain(runtime.store, account_id, domain_id).version
    rotate_dkim(runtime.store, runtime.secrets, config, account_id, domain_id)
    results = [{"key": "dkim2", "status": "pass", "found": [], "problem": None}]
    with pytest.raises(Conflict):
        record_check(runtime.store, config, account_id, domain_id, results, None, looked_up)
    assert get_domain(runtime.store, account_id, domain_id).checked_at is None
