"""The official `mailtrap` SDK against `postline serve` over HTTPS, unchanged."""

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mailtrap as mt
import mailtrap.client
import pytest
import requests
import trustme
from mailtrap.exceptions import APIError
from mailtrap.models.api_tokens import ApiTokenResource, CreateApiTokenParams
from mailtrap.models.email_logs import (
    EmailLogsListFilters,
    filter_ci_not_equal,
    filter_string_equal,
)
from mailtrap.models.sending_domains import (
    CreateSendingDomainParams,
    SendSetupInstructionsParams,
    UpdateSendingDomainParams,
)
from mailtrap.models.stats import SendingStats, StatsFilterParams
from mailtrap.models.suppressions import CreateSuppressionParams
from mailtrap.models.webhooks import CreateWebhookParams, UpdateWebhookParams

from tests.support.process import Serve, postline


@pytest.fixture
def https_server(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Serve, str, str]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / n for n in ("cert.pem", "key.pem", "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(cert_file)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(cert_file, append=True)
    cert.private_key_pem.write_to_path(key_file)
    ca.cert_pem.write_to_path(ca_file)
    env = {"POSTLINE_DATABASE_URL": database_url, "POSTLINE_SYSTEM_SENDER": "pl@mta.example.net"}
    data = tmp_path / "data"
    boot = postline("bootstrap", "--json", "--data-dir", str(data), env=env)
    credentials = json.loads(boot.stdout)
    server = Serve(
        "--tls-cert",
        str(cert_file),
        "--tls-key",
        str(key_file),
        "--data-dir",
        str(data),
        env=env,
        log=tmp_path / "serve.log",
    )
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    host = server.url.removeprefix("https://")
    monkeypatch.setattr(mailtrap.client, "GENERAL_HOST", host)
    try:
        yield server, credentials["api_token"], str(credentials["account_id"])
    finally:
        gc.collect()  # close the SDK's pooled TLS connections before the server shuts down
        assert server.stop() == 0


def test_send_batch_send_and_read_back_through_the_sdk(
    https_server: tuple[Serve, str, str],
) -> None:
    server, token, account_id = https_server
    host = server.url.removeprefix("https://")
    client = mt.MailtrapClient(token=token, api_host=host, account_id=account_id)

    sent = client.send(
        mt.Mail(
            sender=mt.Address(email="hello@example.com", name="SDK test"),
            to=[mt.Address(email="a@example.com"), mt.Address(email="b@example.com")],
            cc=[mt.Address(email="c@example.com")],
            subject="Hello from the SDK",
            text="Plain",
            html="<p>HTML</p>",
            category="sdk",
            custom_variables={"order": "1001"},
            headers={"X-Test": "yes"},
            attachments=[
                mt.Attachment(content=b"SGVsbG8=", filename="hello.txt", mimetype="text/plain")
            ],
        )
    )
    assert sent["success"] is True
    assert len(sent["message_ids"]) == 3

    batch = client.batch_send(
        mt.BatchSendEmailParams(
            base=mt.BatchMail(
                sender=mt.Address(email="news@example.com"),
                subject="News",
                text="Monthly news",
                category="newsletter",
            ),
            requests=[
                mt.BatchEmailRequest(to=[mt.Address(email=f"r{i}@example.com")]) for i in range(3)
            ],
        )
    )
    assert batch["success"] is True
    assert [len(r["message_ids"]) for r in batch["responses"]] == [1, 1, 1]

    logs = client.email_logs_api.email_logs
    first = logs.get_by_id(sent["message_ids"][2])
    assert (first.to, first.from_, first.status) == (
        "c@example.com",
        "hello@example.com",
        "enqueued",
    )
    assert (first.category, first.custom_variables) == ("sdk", {"order": "1001"})
    assert [e.event_type for e in first.events] == ["sending"]
    batched = logs.get_by_id(batch["responses"][1]["message_ids"][0])
    assert (batched.to, batched.subject, batched.category) == (
        "r1@example.com",
        "News",
        "newsletter",
    )
    assert batched.raw_message_url is not None
    raw = requests.get(batched.raw_message_url, timeout=10)  # the link is the permission
    assert raw.status_code == 200
    assert b"Subject: News" in raw.content

    listed = logs.get_list(
        filters=EmailLogsListFilters(
            category=filter_string_equal("newsletter"), to=filter_ci_not_equal("R0@example.com")
        )
    )
    assert sorted(m.to for m in listed.messages) == ["r1@example.com", "r2@example.com"]
    assert (listed.total_count, listed.next_page_cursor) == (2, None)
    everything = logs.get_list(search_after=listed.messages[0].message_id)
    assert everything.total_count == 6
    assert listed.messages[1].message_id in [m.message_id for m in everything.messages]


def test_sdk_sees_the_api_errors(https_server: tuple[Serve, str, str]) -> None:
    server, _, _ = https_server
    host = server.url.removeprefix("https://")
    bad = mt.MailtrapClient(token="0" * 32, api_host=host)
    try:
        bad.send(
            mt.Mail(
                sender=mt.Address(email="a@example.com"),
                to=[mt.Address(email="b@example.com")],
                subject="s",
                text="t",
            )
        )
    except mt.AuthorizationError as error:
        errors = error.errors
    else:
        pytest.fail("an unknown token was accepted")
    assert errors == ["Unauthorized"]


def test_sending_domains_through_the_sdk(https_server: tuple[Serve, str, str]) -> None:
    _, token, account_id = https_server
    domains = mt.MailtrapClient(token=token, account_id=account_id).sending_domains_api
    api = domains.sending_domains

    created = api.create(CreateSendingDomainParams(domain_name="example.org"))
    assert (created.domain_name, created.dns_verified, created.compliance_status) == (
        "example.org",
        False,
        "initial",
    )
    assert [(r.key, r.type, r.status) for r in created.dns_records][:2] == [
        ("verification", "TXT", "unchecked"),
        ("spf", "TXT", "unchecked"),
    ]
    assert [d.id for d in api.get_list()] == [created.id]
    assert api.get_by_id(created.id).dns_records == created.dns_records

    sent = api.send_setup_instructions(
        created.id, SendSetupInstructionsParams(email="it@example.org")
    )
    assert sent.message.startswith("Instructions email has been sent")
    with pytest.raises(APIError) as bad_address:
        api.send_setup_instructions(created.id, SendSetupInstructionsParams(email="it"))
    assert bad_address.value.status == 422

    updated = api.update(
        created.id,
        UpdateSendingDomainParams(open_tracking_enabled=False, click_tracking_enabled=True),
    )
    assert (updated.open_tracking_enabled, updated.click_tracking_enabled) == (False, True)

    with pytest.raises(APIError) as refused:
        api.create(CreateSendingDomainParams(domain_name="example.org"))
    assert refused.value.status == 422

    api.delete(created.id)
    assert api.get_list() == []
    with pytest.raises(APIError) as gone:
        api.get_by_id(created.id)
    assert gone.value.status == 404


def test_suppressions_through_the_sdk(https_server: tuple[Serve, str, str]) -> None:
    _, token, account_id = https_server
    client = mt.MailtrapClient(token=token, account_id=account_id)
    domain = client.sending_domains_api.sending_domains.create(
        CreateSendingDomainParams(domain_name="example.org")
    )
    api = client.suppressions_api.suppressions
    added = api.create(
        CreateSuppressionParams(
            email="gone@example.net", domain_id=domain.id, sending_stream="transactional"
        )
    )
    assert (added.email, added.type, added.domain_name) == (
        "gone@example.net",
        "manual import",
        "example.org",
    )
    assert [s.id for s in api.get_list(email="GONE@example.net")] == [added.id]
    assert api.delete(added.id).id == added.id
    assert api.get_list() == []


def test_api_tokens_through_the_sdk(https_server: tuple[Serve, str, str]) -> None:
    _, token, account_id = https_server
    client = mt.MailtrapClient(token=token, account_id=account_id)
    api = client.general_api.api_tokens
    owner = int(account_id)
    domain = client.sending_domains_api.sending_domains.create(
        CreateSendingDomainParams(domain_name="example.org")
    )
    viewer = ApiTokenResource(resource_type="account", resource_id=owner, access_level=10)
    created = api.create(owner, CreateApiTokenParams(name="reports", resources=[viewer]))
    assert len(created.token) == 32
    assert created.expires_at is not None
    never = api.create(
        owner, CreateApiTokenParams(name="forever", resources=[viewer], expires_at=None)
    )
    assert never.expires_at is None
    names = [t.name for t in api.get_list(owner)]
    assert names[-2:] == ["reports", "forever"]
    assert any(name.startswith("example.org token ") for name in names)
    assert api.get_by_id(owner, created.id).last_4_digits == created.token[-4:]

    successor = api.reset(owner, created.id)
    assert successor.name == f"reports {successor.id}"
    assert successor.token not in (created.token, "")
    with pytest.raises(APIError) as twice:
        api.reset(owner, created.id)
    assert twice.value.status == 422

    assert api.delete(owner, successor.id).id == successor.id
    with pytest.raises(APIError) as gone:
        api.get_by_id(owner, successor.id)
    assert gone.value.status == 404

    (own,) = [t for t in api.get_list(owner) if t.resources[0].resource_type == "domain"]
    assert own.resources[0].resource_id == domain.id
    with pytest.raises(APIError) as last:
        api.delete(owner, own.id)
    assert last.value.status == 422


def test_stats_through_the_sdk(https_server: tuple[Serve, str, str]) -> None:
    server, token, account_id = https_server
    host = server.url.removeprefix("https://")
    client = mt.MailtrapClient(token=token, api_host=host, account_id=account_id)
    domain = client.sending_domains_api.sending_domains.create(
        CreateSendingDomainParams(domain_name="example.org")
    )
    client.send(
        mt.Mail(
            sender=mt.Address(email="hello@example.org"),
            to=[mt.Address(email="a@example.net"), mt.Address(email="b@example.net")],
            subject="Stats",
            text="Counted",
            category="sdk-stats",
        )
    )
    today = datetime.now(UTC).date()
    days = [(today + timedelta(days=n)).isoformat() for n in (-1, 0, 1)]
    params = StatsFilterParams(start_date=days[0], end_date=days[-1])
    stats = client.stats_api
    owner = int(account_id)

    total = stats.get(owner, params)  # sent, not delivered: no DNS in this test
    assert isinstance(total, SendingStats)
    assert (total.delivery_count, total.delivery_rate, total.open_count) == (0, 0.0, 0)
    (by_domain,) = stats.by_domain(owner, params)
    assert (by_domain.name, by_domain.value) == ("sending_domain_id", domain.id)
    (by_category,) = stats.by_category(owner, params)
    assert (by_category.name, by_category.value) == ("category", "sdk-stats")
    assert stats.by_email_service_provider(owner, params) == []  # no provider has answered
    (by_date,) = stats.by_date(owner, params)
    assert by_date.name == "date"
    assert by_date.value in days
    filtered = StatsFilterParams(
        start_date=days[0], end_date=days[-1], sending_domain_ids=[domain.id], categories=["x"]
    )
    assert stats.by_category(owner, filtered) == []
    with pytest.raises(APIError) as no_end:
        stats.get(owner, StatsFilterParams(start_date=days[0]))
    assert no_end.value.status == 422


def test_webhooks_through_the_sdk(https_server: tuple[Serve, str, str]) -> None:
    _, token, account_id = https_server
    client = mt.MailtrapClient(token=token, account_id=account_id)
    api = client.webhooks_api.webhooks
    created = api.create(
        CreateWebhookParams(
            url="https://hooks.example.com/mailtrap",
            webhook_type="email_sending",
            sending_stream="transactional",
            event_types=["delivery", "bounce"],
        )
    )
    assert len(created.signing_secret) == 32
    assert (created.active, created.payload_format, created.domain_id) == (True, "json", None)
    audit = api.create(
        CreateWebhookParams(
            url="https://hooks.example.com/audit",
            webhook_type="audit_log",
            payload_format="jsonlines",
        )
    )
    assert [w.id for w in api.get_list()] == [created.id, audit.id]
    paused = api.update(created.id, UpdateWebhookParams(active=False, event_types=["open"]))
    assert (paused.active, paused.event_types) == (False, ["open"])
    assert api.get_by_id(created.id).event_types == ["open"]
    with pytest.raises(APIError) as wrong:
        api.update(audit.id, UpdateWebhookParams(payload_format="xml"))
    assert wrong.value.status == 422
    assert api.delete(created.id).id == created.id
    with pytest.raises(APIError) as gone:
        api.get_by_id(created.id)
    assert gone.value.status == 404
    assert [w.id for w in api.get_list()] == [audit.id]
