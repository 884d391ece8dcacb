"""The sender policy: an account sends only from its DNS-verified sending domains."""

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.dns import RecordLookup
from engine.accounts import Authenticator, issue_token, open_account
from engine.domains import add_domain, expected, get_domain
from engine.runtime import Runtime
from engine.tokens import create_token
from tests.support.dns import LocalDns, Zone
from tests.support.live import LiveServer
from tests.support.smtp import Certificates, LiveSmtp
from tests.support.tools import swaks as swaks_path


@pytest.fixture
def verified(runtime: Runtime, account: tuple[int, str]) -> str:
    """The account's verified domain `example.org`, with the policy turned on."""
    account_id, _ = account
    dns_server = LocalDns(Zone())
    try:
        runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
        domain_id = add_domain(
            runtime.store, runtime.secrets, runtime.domain_config, account_id, "example.org"
        )
        domain = get_domain(runtime.store, account_id, domain_id)
        for record in expected(domain, runtime.domain_config):
            dns_server.zone.txt[record.domain] = record.value
        asyncio.run(runtime.domain_checker.check(account_id, domain_id))
        runtime.domains.catch_up()
    finally:
        dns_server.stop()
    runtime.senders.policy = "verified"
    return "example.org"


def message(sender: str) -> dict:
    return {
        "from": {"email": sender},
        "to": [{"email": "a@example.net"}],
        "subject": "s",
        "text": "t",
    }


def test_the_api_sends_only_from_verified_domains(
    runtime: Runtime, account: tuple[int, str], live: LiveServer, verified: str
) -> None:
    _, token = account
    headers = {"Authorization": f"Bearer {token}"}
    head = runtime.store.head()
    for sender in ("shop@example.com", "shop@mail.example.org"):  # unknown; a subdomain
        refused = live.client.post("/api/send", json=message(sender), headers=headers)
        domain = sender.partition("@")[2]
        assert (refused.status_code, refused.json()) == (
            401,
            {
                "success": False,
                "errors": [
                    "Unauthorized",
                    f"sending from {domain} is not allowed: it is not a verified sending "
                    "domain of this account",
                ],
            },
        )
    assert runtime.store.head() == head  # nothing was stored
    sent = live.client.post("/api/send", json=message("Shop@Example.ORG"), headers=headers)
    assert sent.status_code == 200, sent.text

    batch = live.client.post(
        "/api/batch",
        json={"requests": [message("a@example.org"), message("b@example.com")]},
        headers=headers,
    ).json()
    assert batch["responses"][0]["success"] is True
    assert batch["responses"][1]["errors"][0] == "Unauthorized"


def test_another_accounts_verified_domain_is_not_yours(
    runtime: Runtime, live: LiveServer, verified: str
) -> None:
    other = open_account(runtime.store, "Other")
    token = issue_token(runtime.store, other, "t", created_by="tests").token
    refused = live.client.post(
        "/api/send", json=message("shop@example.org"), headers={"Api-Token": token}
    )
    assert refused.status_code == 401


def swaks(port: int, password: str, sender: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Send one message with swaks through the relay on `port`, as the token `password`."""
    return subprocess.run(
        [
            swaks_path(),
            *("--server", f"127.0.0.1:{port}"),
            *("--auth", "PLAIN", "--auth-user", "api", "--auth-password", password),
            *("--from", sender, "--to", "a@example.net"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_smtp_mail_from_an_unverified_domain_is_refused_550_5_7_1(
    runtime: Runtime, account: tuple[int, str], verified: str, tmp_path: Path
) -> None:
    swaks_path()
    relay = LiveSmtp(runtime, Certificates(tmp_path))
    try:

        def send(sender: str, *extra: str) -> subprocess.CompletedProcess[str]:
            return swaks(relay.port(), account[1], sender, *extra)

        refused = send("shop@example.com")
        assert refused.returncode != 0
        assert "<** 550 5.7.1 Sending from domain is not allowed" in refused.stdout
        # the envelope's domain is verified, the From: header's is not that domain
        other_author = send("shop@example.org", "--header", "From: Shop <shop@example.com>")
        assert other_author.returncode != 0
        assert "<** 550 5.7.1 From: Header does not match the sender's domain" in (
            other_author.stdout
        )
        two_authors = send("shop@example.org", "--header", "From: a@example.org, ceo@bank.example")
        assert "<** 550 5.7.1 From: Header does not match" in two_authors.stdout
        accepted = send("shop@example.org", "--header", 'From: "Shop" <news@EXAMPLE.org>')
        assert accepted.returncode == 0, accepted.stdout
        assert "queued as" in accepted.stdout
    finally:
        relay.stop()


def test_a_domain_token_relays_only_from_its_domain(
    runtime: Runtime, account: tuple[int, str], tmp_path: Path
) -> None:
    account_id, admin = account
    swaks_path()
    ids = [
        add_domain(runtime.store, runtime.secrets, runtime.domain_config, account_id, name)
        for name in ("example.org", "example.com")
    ]
    runtime.domains.catch_up()
    principal = Authenticator(runtime.store).authenticate(admin)
    assert principal is not None
    grant = [{"resource_type": "domain", "resource_id": ids[0], "access_level": 100}]
    domain_token = create_token(
        runtime.store, principal, "relay", grant, None, datetime.now(UTC)
    ).secret
    relay = LiveSmtp(runtime, Certificates(tmp_path))
    try:  # the policy `any`: the account admin may send as anyone, the domain token may not
        refused = swaks(relay.port(), domain_token, "shop@example.com")
        assert "<** 550 5.7.1 Sending from domain is not allowed" in refused.stdout
        assert swaks(relay.port(), admin, "shop@example.com").returncode == 0
        accepted = swaks(relay.port(), domain_token, "shop@example.org")
        assert accepted.returncode == 0, accepted.stdout
    finally:
        relay.stop()
