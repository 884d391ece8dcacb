"""Delivery end to end: accept -> dispatch -> queue -> MTA -> local DNS -> MX sink -> events."""

import asyncio
import email
import email.policy
import json
import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dkim
import msgspec
import pytest

from adapters.dkim_signing import Signer, load_key
from adapters.dns import MxResolver, RecordLookup
from domain.dns_records import ExpectedRecord
from domain.feedback_reports import read_report
from domain.shaping import Shaping
from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin
from engine.dkim_keys import create_key
from engine.domains import add_domain, change_settings, expected, get_domain
from engine.mta import Mta, MtaSettings
from engine.opt_outs import UnknownMessage, complain
from engine.policy import shipped
from engine.reports import run_report
from engine.runtime import Runtime
from projections.delivery_queue import pending
from projections.email_logs import get_message
from projections.suppressions import list_suppressions
from tests.support.dns import LocalDns, Zone, txt_from
from tests.support.live import LiveServer
from tests.support.mx_sink import FAST_RETRIES, MxSink
from tests.support.process import postline
from tests.support.smtp import Certificates

ORIGIN = Origin(Principal(1, 1, "t", account_admin(1)), "transactional", "api", None)


@pytest.fixture
def sink(request: pytest.FixtureRequest) -> Iterator[MxSink]:
    """The MX sink; `indirect` parametrisation says whether it offers PIPELINING."""
    server = MxSink(pipelining=getattr(request, "param", False))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def dns_server() -> Iterator[LocalDns]:
    zone = Zone(
        mx={
            "sink.test": [(10, "mx.sink.test.")],
            "nullmx.test": [(0, ".")],
            "refused.test": [(10, "mx.refused.test.")],
            "other.test": [(10, "mx.sink.test.")],
        },
        a={"mx.sink.test": ["127.0.0.1"], "mx.refused.test": ["127.0.0.9"]},
    )
    server = LocalDns(zone)
    try:
        yield server
    finally:
        server.stop()


def deliver(
    runtime: Runtime,
    dns_server: LocalDns,
    sink: MxSink,
    recipients: list[str],
    done: int,
    signer: Signer | None = None,
    shaping: Shaping | None = None,
    origin: Origin = ORIGIN,
    **settings: Any,
) -> tuple[list[str], Mta]:
    """Send one message to `recipients` (none: send nothing) and run the MTA until `done`
    outcomes are final."""
    mta = Mta(
        runtime,
        MtaSettings(
            **{
                "helo": "postline.test",
                "mx_port": sink.port,
                "tick": 0.05,
                "connect_timeout": 2,
                "tls": False,
                **settings,
            }
        ),
        resolver=MxResolver(dns_server.nameservers, timeout=2),
        schedule=FAST_RETRIES,
        signer=signer or Signer(),
        shaping=shaping,
    )
    draft = msgspec.convert(
        {
            "from": {"email": "shop@example.com", "name": "Shop"},
            "to": [{"email": r} for r in recipients],
            "subject": "Your order",
            "text": "It has shipped.",
            "category": "orders",
        },
        Draft,
    )

    async def main() -> list[str]:
        await runtime.start_background()
        worker = asyncio.create_task(mta.run())
        try:
            ids = await runtime.acceptor.send(origin, draft) if recipients else []
            for _ in range(400):
                await asyncio.sleep(0.05)
                if mta.delivered + mta.bounced + mta.rejected >= done:
                    break
            return ids
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await runtime.stop_background()

    return asyncio.run(main()), mta


def message_to(recipient: str, subject: str = "s") -> Draft:
    return msgspec.convert(
        {
            "from": {"email": "shop@example.com"},
            "to": [{"email": recipient}],
            "subject": subject,
            "text": "x",
        },
        Draft,
    )


def published_domain(
    runtime: Runtime, dns_server: LocalDns, account_id: int
) -> tuple[int, list[ExpectedRecord]]:
    """The account's sending domain example.com, every record published in the test DNS."""
    runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, "example.com"
    )
    records = expected(get_domain(runtime.store, account_id, domain_id), runtime.domain_config)
    for record in records:
        dns_server.zone.txt[record.domain] = record.value
    return domain_id, records


def history(runtime: Runtime, message_id: str) -> tuple[str, list[str], dict]:
    runtime.email_logs.catch_up()
    log = get_message(runtime.store.db, 1, message_id)
    assert log is not None
    return log["status"], [e["event_type"] for e in log["events"]], log["events"][-1]["details"]


@pytest.mark.parametrize("sink", [False, True], ids=["one-by-one", "pipelining"], indirect=True)
def test_outcomes_of_a_delivery_run(runtime: Runtime, dns_server: LocalDns, sink: MxSink) -> None:
    recipients = [
        "ok@sink.test",
        "greylist@sink.test",
        "unknown@sink.test",
        "full@sink.test",
        "someone@nullmx.test",
    ]
    ids, _ = deliver(runtime, dns_server, sink, recipients, done=5)
    ok, greylisted, unknown, full, nullmx = ids

    assert history(runtime, ok)[:2] == ("delivered", ["sending", "delivery"])
    details = history(runtime, ok)[2]
    assert (details["recipient_mx"], details["email_service_provider"]) == ("mx.sink.test", "Other")
    assert history(runtime, greylisted)[:2] == (
        "delivered",
        ["sending", "soft_bounce", "delivery"],
    )
    status, events, details = history(runtime, unknown)
    assert (status, events[-1], details["bounce_category"]) == (
        "not_delivered",
        "bounce",
        "badrecipient",
    )
    assert details["email_service_provider_status"] == "5.1.1"
    status, events, details = history(runtime, full)
    assert (status, details["bounce_category"]) == ("not_delivered", "overquota")
    status, events, details = history(runtime, nullmx)
    assert (status, events, details["bounce_category"]) == (
        "not_delivered",
        ["sending", "bounce"],
        "dnsFail",
    )

    # one transaction for the four copies at sink.test: only ok@ was taken the first time
    first, retried = sink.received
    assert (first.recipients, retried.recipients) == (["ok@sink.test"], ["greylist@sink.test"])
    taken = {r.recipients[0]: r for r in sink.received}
    message = email.message_from_bytes(taken["ok@sink.test"].data)
    assert message["Subject"] == "Your order"
    assert message["Message-ID"] == f"<{uuid.UUID(ok).hex}@example.com>"
    assert taken["ok@sink.test"].sender == "shop@example.com"
    runtime.queue.catch_up()
    assert pending(runtime.store.db) == 0


def test_unreachable_hosts_soft_bounce_then_bounce(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    ids, _ = deliver(runtime, dns_server, sink, ["a@refused.test"], done=1)
    status, events, details = history(runtime, ids[0])
    assert status == "not_delivered"
    assert events == ["sending", "soft_bounce", "soft_bounce", "bounce"]
    assert details["bounce_category"] == "transientfail"
    assert "Connection refused" in details["email_service_provider_response"]


@pytest.mark.parametrize("sink", [False, True], ids=["one-by-one", "pipelining"], indirect=True)
def test_a_server_that_stalls_times_out_softly_then_bounces(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    sink.script.stall_seconds = 5
    ids, _ = deliver(runtime, dns_server, sink, ["stall@sink.test"], done=1, command_timeout=0.5)
    status, events, details = history(runtime, ids[0])
    assert (status, events) == (
        "not_delivered",
        ["sending", "soft_bounce", "soft_bounce", "bounce"],
    )
    assert (
        "Timed out talking to mx.sink.test[127.0.0.1]"
        in (details["email_service_provider_response"])
    )
    assert details["bounce_category"] == "timeout"


def test_starttls_is_used_when_offered(
    runtime: Runtime, dns_server: LocalDns, tmp_path: Path
) -> None:
    certificates = Certificates(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    tls_sink = MxSink(tls=context)
    try:
        ids, _ = deliver(runtime, dns_server, tls_sink, ["ok@sink.test"], done=1, tls=True)
        (received,) = tls_sink.received
    finally:
        tls_sink.stop()
    assert received.tls
    assert history(runtime, ids[0])[0] == "delivered"


def test_messages_are_dkim_signed_and_verify_at_the_sink(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink, tmp_path: Path
) -> None:
    key = create_key(tmp_path, "example.com", "pl1")
    dns_server.zone.txt[key.record_name] = key.record_value
    signer = Signer([load_key("example.com", "pl1", key.path.read_bytes())])
    deliver(runtime, dns_server, sink, ["ok@sink.test"], done=1, signer=signer)
    (received,) = sink.received
    assert received.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")

    assert dkim.verify(received.data, dnsfunc=txt_from(dns_server))


def test_a_verified_sending_domain_signs_with_its_own_key(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink, account: tuple[int, str]
) -> None:
    account_id, _ = account
    domain_id, _ = published_domain(runtime, dns_server, account_id)
    mta = Mta(
        runtime,
        MtaSettings(helo="postline.test", mx_port=sink.port, tick=0.05, tls=False),
        resolver=MxResolver(dns_server.nameservers, timeout=2),
        signer=Signer(),
    )
    draft = message_to("ok@sink.test")

    async def verified_while_running() -> None:
        await runtime.start_background()
        worker = asyncio.create_task(mta.run())
        try:
            await asyncio.sleep(0.2)  # running, with no key for example.com yet
            # verified by this process: the MTA takes the key at once, not at its next reload
            await runtime.domain_checker.check(account_id, domain_id)
            await asyncio.sleep(0.5)
            await runtime.acceptor.send(ORIGIN, draft)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if mta.delivered:
                    break
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await runtime.stop_background()

    asyncio.run(verified_while_running())
    (received,) = sink.received
    head = received.data.split(b"\r\n\r\n")[0]
    assert b"d=example.com;" in head
    assert b"s=pl1;" in head
    assert dkim.verify(received.data, dnsfunc=txt_from(dns_server))


def test_a_message_rate_holds_mail_back_and_drops_none(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    slow = Shaping({"default": {"max_message_rate": "2/s"}}, shipped("shaping"))
    recipients = [f"ok{n}@sink.test" for n in range(5)]
    deliver(runtime, dns_server, sink, recipients, done=5, shaping=slow)
    taken = sorted(sink.received, key=lambda r: r.at)
    assert sorted(r for t in taken for r in t.recipients) == recipients
    # at most 2 in any second: transactions of two, two and one, each waiting for the window
    assert sorted(len(t.recipients) for t in taken) == [1, 2, 2]
    # The sink stamps a transaction when its DATA ends, a variable time after the limiter let it
    # go (the first one also connects): the gaps are a second less that latency, never near 0.
    assert taken[1].at - taken[0].at >= 0.6
    assert taken[2].at - taken[1].at >= 0.6
    assert taken[2].at - taken[0].at >= 1.7


def test_copies_to_one_domain_share_a_transaction(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    recipients = ["ok1@sink.test", "ok2@sink.test", "ok@other.test", "ok3@sink.test"]
    ids, _ = deliver(runtime, dns_server, sink, recipients, done=4)
    assert sorted(r.recipients for r in sink.received) == [
        ["ok1@sink.test", "ok2@sink.test", "ok3@sink.test"],
        ["ok@other.test"],
    ]
    assert all(history(runtime, i)[0] == "delivered" for i in ids)


def test_verp_gives_each_copy_its_own_return_path(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    recipients = ["ok1@sink.test", "ok2@sink.test"]
    ids, _ = deliver(
        runtime, dns_server, sink, recipients, done=2, return_path_domain="rp.example.com"
    )
    senders = {r.recipients[0]: r.sender for r in sink.received}
    assert senders == {
        recipient: f"bounces+{uuid.UUID(i).hex}@rp.example.com"
        for recipient, i in zip(recipients, ids, strict=True)
    }


def test_a_hard_bounce_suppresses_the_recipient_for_that_stream(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink
) -> None:
    (first,), _ = deliver(runtime, dns_server, sink, ["unknown@sink.test"], done=1)
    assert history(runtime, first)[2]["bounce_category"] == "badrecipient"
    runtime.suppressor.catch_up()
    runtime.suppressions.catch_up()
    (listed,) = list_suppressions(runtime.store.db, 1) or []
    assert (listed["email"], listed["type"], listed["domain_name"], listed["sending_stream"]) == (
        "unknown@sink.test",
        "hard bounce",
        "example.com",
        "transactional",
    )
    assert listed["message_bounce_category"] == "badrecipient"
    assert listed["message_subject"] == "Your order"

    draft = message_to("Unknown@sink.test", "Again")
    bulk = Origin(ORIGIN.principal, "bulk", "api", None)
    again = asyncio.run(runtime.acceptor.send(ORIGIN, draft))[0]
    other_stream = asyncio.run(runtime.acceptor.send(bulk, draft))[0]
    runtime.dispatcher.catch_up()
    status, events, details = history(runtime, again)
    assert (status, events) == ("not_delivered", ["sending", "reject"])
    assert details == {"reject_reason": "Recipient in suppression list. Reason: hard bounce"}
    assert history(runtime, other_stream)[:2] == ("enqueued", ["sending"])
    runtime.queue.catch_up()
    assert pending(runtime.store.db) == 1  # the bulk copy waits for delivery; the other is gone


def test_mail_from_a_domain_that_lost_verification_is_held_then_rejected(
    runtime: Runtime,
    dns_server: LocalDns,
    sink: MxSink,
    account: tuple[int, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert account[0] == ORIGIN.principal.account_id == 1
    runtime.domain_checker.lookup = RecordLookup(dns_server.nameservers, timeout=2)
    domain_id, records = published_domain(runtime, dns_server, 1)
    asyncio.run(runtime.domain_checker.check(1, domain_id))
    runtime.domains.catch_up()
    runtime.senders.policy = "verified"
    draft = message_to("ok@sink.test")
    (held,) = asyncio.run(runtime.acceptor.send(ORIGIN, draft))
    runtime.dispatcher.catch_up()
    runtime.queue.catch_up()
    # accepted while verified; then the DKIM record breaks and the check notices
    dkim1 = next(r for r in records if r.key == "dkim1")
    dns_server.zone.txt[dkim1.domain] = "v=DKIM1; k=rsa; p=AAAA"
    asyncio.run(runtime.domain_checker.check(1, domain_id))
    runtime.domains.catch_up()
    runtime.senders.forget(1)
    monkeypatch.setattr("engine.mta.SUSPENSION_CHECKS", 2)
    monkeypatch.setattr("engine.mta.SUSPENSION_INTERVAL_SECONDS", 0.1)

    _, mta = deliver(runtime, dns_server, sink, [], done=1)
    assert (mta.suspended, mta.rejected, sink.received) == (2, 1, [])
    status, events, details = history(runtime, held)
    assert (status, events) == (
        "not_delivered",
        ["sending", "suspension", "suspension", "reject"],
    )
    assert details == {"reject_reason": "Sending domain is not verified"}


def arf_report(original: bytes, recipient: str) -> bytes:
    """An RFC 5965 feedback report about `original`, as a mailbox provider sends one."""
    boundary = "report-boundary"
    return (
        (
            "From: fbl@mailbox.example\r\nTo: complaints@postline.test\r\nSubject: complaint\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=feedback-report;"
            f' boundary="{boundary}"\r\n'
            f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nA spam complaint.\r\n"
            f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
            "Feedback-Type: abuse\r\nUser-Agent: MailboxFBL/1.0\r\nVersion: 1\r\n"
            f"Original-Rcpt-To: {recipient}\r\n"
            f"\r\n--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode()
        + original
        + f"\r\n--{boundary}--\r\n".encode()
    )


def test_bulk_mail_can_be_unsubscribed_and_complained_of(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink, database_url: str, tmp_path: Path
) -> None:
    runtime.public_url = "https://mail.example.net"
    bulk = Origin(ORIGIN.principal, "bulk", "api", None)
    (first, second), _ = deliver(
        runtime, dns_server, sink, ["ok1@sink.test", "ok2@sink.test"], done=2, origin=bulk
    )
    (receipt,), _ = deliver(runtime, dns_server, sink, ["ok1@sink.test"], done=1)
    by_id = {}
    for taken in sink.received:  # bulk copies carry their own headers: one per transaction
        message = email.message_from_bytes(taken.data)
        by_id[message["X-Postline-ID"] or receipt] = (message, taken.data)
    assert sorted(by_id) == sorted([first, second, receipt])
    unsubscribe = by_id[first][0]["List-Unsubscribe"]
    assert unsubscribe.startswith("<https://mail.example.net/unsubscribe/")
    assert by_id[first][0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert by_id[first][0]["Precedence"] == "bulk"
    assert by_id[receipt][0]["List-Unsubscribe"] is None  # transactional: none of it
    assert by_id[receipt][0]["Precedence"] is None

    path = unsubscribe.strip("<>").removeprefix("https://mail.example.net")
    live = LiveServer(runtime)
    try:
        asked = live.client.get(path)
        assert asked.status_code == 200
        assert 'method="post"' in asked.text
        assert history(runtime, first)[0] == "delivered"  # a GET changes nothing
        forged = live.client.post(path[:-3] + "abc", content=b"List-Unsubscribe=One-Click")
        assert forged.status_code == 404
        for _ in range(2):  # a second click changes nothing
            done = live.client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert done.status_code == 200
    finally:
        live.stop()
    status, events, details = history(runtime, first)
    assert (status, events[-2:]) == ("opted_out", ["delivery", "unsubscribe"])
    assert details == {"web_ip_address": "127.0.0.1"}

    report = tmp_path / "report.eml"
    report.write_bytes(arf_report(by_id[second][1], "ok2@sink.test"))
    env = {"POSTLINE_DATABASE_URL": database_url}
    ingested = postline(
        "complaints", "ingest", str(report), "--json", "--data-dir", str(tmp_path), env=env
    )
    assert json.loads(ingested.stdout) == {
        "message_id": second,
        "recipient": "ok2@sink.test",
        "feedback_type": "abuse",
        "recorded": True,
    }
    status, events, details = history(runtime, second)
    assert (status, events[-1], details) == ("opted_out", "spam", {"spam_feedback_type": "abuse"})
    report.write_bytes(arf_report(by_id[second][1], "someone@else.test"))
    wrong = postline(
        "complaints", "ingest", str(report), "--data-dir", str(tmp_path), env=env, check=False
    )
    assert wrong.returncode == 65
    assert "not someone@else.test" in wrong.stderr
    # ids in headers can be copied: the report must be of mail from the message's domain, and
    # the Message-ID all copies share must come with the recipient it was reported by
    original = by_id[second][1]
    forged = original.replace(b"From: Shop <shop@example.com>", b"From: x@other.test")
    with pytest.raises(UnknownMessage, match=r"is from example\.com"):
        complain(runtime.store, read_report(arf_report(forged, "ok2@sink.test")))
    shared = original.replace(f"X-Postline-ID: {second}\r\n".encode(), b"")
    with pytest.raises(UnknownMessage, match=r"not ok2@sink\.test"):  # the first copy's id
        complain(runtime.store, read_report(arf_report(shared, "ok2@sink.test")))
    anonymous = arf_report(shared, "x").replace(b"Original-Rcpt-To: x\r\n", b"")
    with pytest.raises(UnknownMessage, match="no Original-Rcpt-To"):
        complain(runtime.store, read_report(anonymous))

    # suppressed for the domain and the bulk stream; transactional mail still goes
    runtime.suppressor.catch_up()
    runtime.suppressions.catch_up()
    listed = {
        (s["email"], s["type"], s["sending_stream"])
        for s in list_suppressions(runtime.store.db, 1) or []
    }
    assert listed == {
        ("ok1@sink.test", "unsubscription", "bulk"),
        ("ok2@sink.test", "spam complaint", "bulk"),
    }
    again = asyncio.run(runtime.acceptor.send(bulk, message_to("ok1@sink.test")))[0]
    receipt = asyncio.run(runtime.acceptor.send(ORIGIN, message_to("ok1@sink.test")))[0]
    runtime.dispatcher.catch_up()
    assert history(runtime, again)[2] == {
        "reject_reason": "Recipient in suppression list. Reason: unsubscription"
    }
    assert history(runtime, receipt)[:2] == ("enqueued", ["sending"])


def test_reports_replay_the_log(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink, database_url: str, tmp_path: Path
) -> None:
    recipients = ["ok1@sink.test", "greylist@sink.test", "unknown@sink.test"]
    deliver(runtime, dns_server, sink, recipients, done=3)
    retries = run_report(runtime.store, "retries").rows()
    assert retries == [
        {"soft_bounces_first": 0, "messages": 1, "share": 0.5},
        {"soft_bounces_first": 1, "messages": 1, "share": 0.5},
    ]
    (times,) = run_report(runtime.store, "delivery-times").rows()
    assert times["delivered"] == 2
    assert 0 <= times["p50"] <= times["p90"] <= times["p99"] <= times["max"] < 60
    assert times["max"] >= 0.2  # the greylisted one waited for its retry
    today = datetime.now(UTC).date().isoformat()
    assert run_report(runtime.store, "bounces").rows() == [
        {"day": today, "domain": "example.com", "bounce_category": "badrecipient", "bounces": 1}
    ]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert run_report(runtime.store, "retries", since=later).rows() == []

    env = {"POSTLINE_DATABASE_URL": database_url}
    shown = postline("report", "retries", "--json", "--data-dir", str(tmp_path), env=env)
    assert json.loads(shown.stdout)["rows"] == retries
    table = postline("report", "bounces", "--data-dir", str(tmp_path), env=env).stdout
    assert "badrecipient" in table
    assert "example.com" in table


def test_opens_and_clicks_are_tracked_where_the_domain_asks(
    runtime: Runtime, dns_server: LocalDns, sink: MxSink, account: tuple[int, str]
) -> None:
    account_id, _ = account
    runtime.public_url = "https://mail.example.net"
    domain_id, _ = published_domain(runtime, dns_server, account_id)
    tracking = {"open_tracking_enabled": True, "click_tracking_enabled": True}
    change_settings(runtime.store, account_id, domain_id, tracking)
    mta = Mta(
        runtime,
        MtaSettings(helo="postline.test", mx_port=sink.port, tick=0.05, tls=False),
        resolver=MxResolver(dns_server.nameservers, timeout=2),
        signer=Signer(),
    )
    draft = msgspec.convert(
        {
            "from": {"email": "shop@example.com"},
            "to": [{"email": "ok@sink.test"}],
            "subject": "Tracked",
            "text": "See https://shop.example/order?id=1",
            "html": '<p>Hi</p><a href="https://shop.example/order?id=1&amp;x=2">Order</a>'
            '<a data-mt-no-track href="https://keep.example/">keep</a></body>',
        },
        Draft,
    )

    async def run() -> str:
        await runtime.start_background()
        worker = asyncio.create_task(mta.run())
        try:
            await runtime.domain_checker.check(account_id, domain_id)
            for _ in range(100):  # the MTA reloads the verified domains' keys and settings
                if mta.signer.keys_for("example.com"):
                    break
                await asyncio.sleep(0.05)
            (sent,) = await runtime.acceptor.send(ORIGIN, draft)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if mta.delivered:
                    break
            return sent
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await runtime.stop_background()

    message_id = asyncio.run(run())
    (received,) = sink.received
    assert dkim.verify(received.data, dnsfunc=txt_from(dns_server))  # signed after the change
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    html = parsed.get_body(("html",)).get_content()
    text = parsed.get_body(("plain",)).get_content()
    assert "https://shop.example/order?id=1" in text  # the text part is left as it is
    assert '<a data-mt-no-track href="https://keep.example/">keep</a>' in html
    click = html.split('<a href="')[1].split('"')[0]
    pixel = html.split('<img src="')[1].split('"')[0]
    assert click.startswith("https://mail.example.net/t/c/")
    assert pixel.startswith("https://mail.example.net/t/o/")
    assert html.index(pixel) < html.index("</body>")

    live = LiveServer(runtime)
    try:
        for _ in range(2):
            seen = live.client.get(pixel.removeprefix(runtime.public_url))
            assert seen.status_code == 200
            assert seen.headers["content-type"] == "image/gif"
        followed = live.client.get(click.removeprefix(runtime.public_url))
        assert followed.status_code == 302
        assert followed.headers["location"] == "https://shop.example/order?id=1&x=2"
        forged = click.removeprefix(runtime.public_url)[:-4] + "abcd"
        assert live.client.get(forged).status_code == 404
    finally:
        live.stop()
    runtime.email_logs.catch_up()
    log = get_message(runtime.store.db, account_id, message_id)
    assert log is not None
    assert [e["event_type"] for e in log["events"]][-3:] == ["open", "open", "click"]
    assert (log["opens_count"], log["clicks_count"]) == (2, 1)
    assert log["events"][-1]["details"] == {
        "click_url": "https://shop.example/order?id=1&x=2",
        "web_ip_address": "127.0.0.1",
    }
