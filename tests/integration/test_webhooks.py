"""Webhooks end to end: management API, outbox, signed batches to a real local receiver."""

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import django
import msgspec
import pytest

from domain.message import Message, follow_up
from domain.retry import RetrySchedule
from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin
from engine.opt_outs import unsubscribe
from engine.runtime import Runtime
from engine.tracking import record_click, record_open
from engine.webhook_sender import SenderSettings, WebhookSender
from engine.webhooks import create_webhook
from projections.webhook_outbox import waiting
from tests.support.live import LiveServer
from tests.support.receiver import Receiver

RETRY_AT_ONCE = RetrySchedule.from_data(
    {
        "first_retry": "0s",
        "factor": 1,
        "max_interval": "0s",
        "jitter": 0,
        "max_attempts": 5,
        "max_age": "1h",
    }
)
ALL_EVENTS = [
    "delivery",
    "soft_bounce",
    "bounce",
    "suspension",
    "unsubscribe",
    "open",
    "spam_complaint",
    "click",
    "reject",
]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers here are on loopback ports (an operator's setting allows it); the runtime's
    own sender waits an hour between rounds, so only the tests' flushes send."""
    monkeypatch.setenv("POSTLINE_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("POSTLINE_WEBHOOK_INTERVAL", "3600")


@pytest.fixture
def sender(runtime: Runtime) -> Iterator[WebhookSender]:
    """A sender the test flushes, retrying at once."""
    sender = WebhookSender(
        runtime, SenderSettings(interval=3600, timeout=5, allow_private=True), RETRY_AT_ONCE
    )
    yield sender
    asyncio.run(sender.client.close())


def flush(runtime: Runtime, sender: WebhookSender, rounds: int = 1) -> None:
    async def go() -> None:
        for _ in range(rounds):
            await sender.flush()

    runtime.webhook_outbox.catch_up()
    asyncio.run(go())


def send(runtime: Runtime, account: int, to: str, **fields: Any) -> str:
    origin = Origin(
        Principal(1, account, "t", account_admin(account)), "transactional", "api", None
    )
    request = {
        "from": {"email": "shop@example.com"},
        "to": [{"email": to}],
        "subject": "Hi",
        "text": "x",
    }
    return asyncio.run(
        runtime.acceptor.send(origin, msgspec.convert({**request, **fields}, Draft))
    )[0]


def outcome(kind: type, message_id: str, **fields: Any) -> Any:
    """An outcome of a queued message (its third event)."""
    return follow_up(kind, uuid.UUID(message_id), 3, datetime.now(UTC), **fields)


def make_history(runtime: Runtime, account: int) -> dict[str, str]:
    """A message per outcome, through the engine: every payload kind."""
    ids = {
        name: send(runtime, account, f"{name}@example.net", category="c", custom_variables={"n": 1})
        for name in ("delivered", "bounced", "deferred", "rejected", "suspended")
    }
    runtime.dispatcher.catch_up()  # each is queued (version 2); no MTA runs here
    where = {"mx": "mx.example.net", "sending_ip": "192.0.2.1", "mailbox_provider": "Other"}
    failure = {"attempt": 1, **where, "enhanced_code": "5.1.1"}
    now = datetime.now(UTC)
    runtime.committer.submit(
        [
            outcome(
                Message.Delivered, ids["delivered"], attempt=1, **where, code=250, response="ok"
            ),
            outcome(
                Message.Bounced,
                ids["bounced"],
                **failure,
                code=550,
                response="5.1.1 User unknown",
                bounce_category="badrecipient",
            ),
            outcome(
                Message.SoftBounced,
                ids["deferred"],
                **{**failure, "enhanced_code": "4.7.1"},
                code=451,
                response="4.7.1 Greylisted",
                bounce_category="greylisting",
                next_attempt_at=now,
            ),
            outcome(Message.Rejected, ids["rejected"], reason="Recipient in suppression list"),
            outcome(
                Message.Suspended,
                ids["suspended"],
                check=1,
                reason="Sending domain is not verified",
                next_check_at=now,
            ),
        ]
    ).result(10)
    message = uuid.UUID(ids["delivered"])
    record_open(runtime.store, message, "203.0.113.5", "Mail/1.0")
    record_click(runtime.store, message, "https://shop.example/a", "203.0.113.5", "Mail/1.0")
    unsubscribe(runtime.store, message, "203.0.113.5", "Mail/1.0")
    return ids


def create(live: LiveServer, account: tuple[int, str], **fields: Any) -> dict[str, Any]:
    owner, token = account
    answer = live.client.post(
        f"/api/accounts/{owner}/webhooks", json={"webhook": fields}, headers=bearer(token)
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def events_of(request: Any) -> list[dict[str, Any]]:
    if request.headers["content-type"] == "application/jsonl":
        return [json.loads(line) for line in request.body.decode().splitlines()]
    return json.loads(request.body)["events"]


def test_signed_batches_reach_the_receiver_once_each_in_order_despite_failures(
    runtime: Runtime,
    account: tuple[int, str],
    live: LiveServer,
    receiver: Receiver,
    sender: WebhookSender,
) -> None:
    hook = create(
        live,
        account,
        url=receiver.url,
        webhook_type="email_sending",
        sending_stream="transactional",
        event_types=ALL_EVENTS,
    )
    assert len(hook["signing_secret"]) == 32
    ids = make_history(runtime, account[0])
    receiver.statuses = [500, 503]  # fails twice, then takes it
    flush(runtime, sender, rounds=3)

    assert [r.status for r in receiver.received] == [500, 503, 200]
    for request in receiver.received:
        expected = hmac.new(
            hook["signing_secret"].encode(), request.body, hashlib.sha256
        ).hexdigest()
        assert request.headers["mailtrap-signature"] == expected
        assert request.headers["content-type"] == "application/json"
    assert receiver.received[0].body == receiver.received[2].body  # the same batch again
    events = [e for r in receiver.accepted() for e in events_of(r)]
    assert len({e["event_id"] for e in events}) == len(events) == 8
    by_message = {}
    for e in events:
        by_message.setdefault(e["message_id"], []).append(e["event"])
    assert by_message[ids["delivered"]] == ["delivery", "open", "click", "unsubscribe"]
    bounce = next(e for e in events if e["event"] == "bounce")
    assert bounce == {
        "event": "bounce",
        "message_id": ids["bounced"],
        "sending_stream": "transactional",
        "email": "bounced@example.net",
        "sending_domain_name": "example.com",
        "timestamp": bounce["timestamp"],
        "event_id": bounce["event_id"],
        "category": "c",
        "custom_variables": {"n": 1},
        "response": "5.1.1 User unknown",
        "response_code": 550,
        "bounce_category": "badrecipient",
    }
    click = next(e for e in events if e["event"] == "click")
    assert (click["url"], click["ip"], click["user_agent"]) == (
        "https://shop.example/a",
        "203.0.113.5",
        "Mail/1.0",
    )
    assert next(e for e in events if e["event"] == "soft bounce")["response_code"] == 451
    assert "reason" in next(e for e in events if e["event"] == "reject")

    flush(runtime, sender)  # nothing is left: nothing is sent again
    assert len(receiver.received) == 3
    log = live.client.get(
        f"/api/accounts/{account[0]}/webhooks/{hook['id']}/deliveries", headers=bearer(account[1])
    ).json()["data"]
    assert [(a["status_code"], a["success"], a["events"]) for a in log] == [
        (200, True, 8),
        (503, False, 8),
        (500, False, 8),
    ]


def test_filters_jsonl_and_the_audit_log_webhook(
    runtime: Runtime,
    account: tuple[int, str],
    live: LiveServer,
    receiver: Receiver,
    sender: WebhookSender,
) -> None:
    owner, token = account
    create(
        live,
        account,
        url=receiver.url + "/bulk",
        webhook_type="email_sending",
        sending_stream="bulk",
        event_types=ALL_EVENTS,
    )  # a bulk webhook hears nothing of transactional mail
    create(
        live,
        account,
        url=receiver.url + "/bounces",
        webhook_type="email_sending",
        sending_stream="transactional",
        event_types=["bounce"],
        payload_format="jsonlines",
    )
    create(
        live,
        account,
        url=receiver.url + "/audit",
        webhook_type="audit_log",
        payload_format="jsonlines",
    )
    make_history(runtime, owner)
    runtime.suppressor.catch_up()  # the hard bounce's suppression (a process of the log)
    live.client.post(
        f"/api/accounts/{owner}/api_tokens",
        json={
            "name": "ci",
            "resources": [{"resource_type": "account", "resource_id": owner, "access_level": 10}],
        },
        headers=bearer(token),
    )
    flush(runtime, sender)
    paths = {r.path: r for r in receiver.received}
    assert sorted(paths) == ["/hooks/audit", "/hooks/bounces"]
    bounces = paths["/hooks/bounces"]
    assert bounces.headers["content-type"] == "application/jsonl"
    assert [e["event"] for e in events_of(bounces)] == ["bounce"]
    audit = {e["event"]: e for e in events_of(paths["/hooks/audit"])}
    assert sorted(audit) == [  # (it was made last: of the webhooks, it hears of none)
        "activity_log.api_token.created",
        "activity_log.suppression.created",  # the hard bounce's
    ]
    assert audit["activity_log.api_token.created"]["actor"]["type"] == "api_token"
    assert audit["activity_log.api_token.created"]["resource"]["name"] == "ci"
    assert audit["activity_log.suppression.created"]["actor"] == {"name": "Postline"}


def test_a_receiver_that_keeps_failing_pauses_the_webhook_until_resumed(
    runtime: Runtime,
    account: tuple[int, str],
    live: LiveServer,
    receiver: Receiver,
    sender: WebhookSender,
) -> None:
    owner, token = account
    hook = create(
        live,
        account,
        url=receiver.url,
        webhook_type="email_sending",
        sending_stream="transactional",
        event_types=["reject"],
    )
    send(runtime, owner, "x@example.net")
    message = send(runtime, owner, "y@example.net")
    runtime.dispatcher.catch_up()
    runtime.committer.submit([outcome(Message.Rejected, message, reason="r")]).result(10)
    receiver.statuses = [500] * 5
    flush(runtime, sender, rounds=6)
    assert len(receiver.received) == 5  # the schedule's attempts, then no more
    path = f"/api/accounts/{owner}/webhooks/{hook['id']}"
    shown = live.client.get(path, headers=bearer(token)).json()["data"]
    assert (shown["active"], shown["pending_events"]) == (False, 1)
    entries = live.client.get(f"/api/accounts/{owner}/audit_log", headers=bearer(token)).json()[
        "data"
    ]
    paused = next(e for e in entries if e["event"] == "activity_log.webhook.paused")
    assert paused["actor"] == {"name": "Postline"}
    assert "5 deliveries failed" in paused["description"]

    resumed = live.client.patch(path, json={"webhook": {"active": True}}, headers=bearer(token))
    assert resumed.json()["data"]["active"] is True
    flush(runtime, sender)
    assert receiver.received[-1].status == 200
    assert [e["message_id"] for e in events_of(receiver.received[-1])] == [message]


def test_management_checks_and_isolation(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, token = account
    runtime.webhook_sender.settings = SenderSettings(interval=3600)  # as in production
    path = f"/api/accounts/{owner}/webhooks"
    base = {"webhook_type": "email_sending", "sending_stream": "bulk", "event_types": ["delivery"]}
    cases = [
        ({**base, "url": "http://127.0.0.1:9/x"}, "port 80 or 443"),
        ({**base, "url": "https://10.1.2.3/x"}, "private, loopback or link-local"),
        ({**base, "url": "https://localhost/x"}, "this machine"),
        ({**base, "url": "ftp://example.com/"}, "http:// or https://"),
        ({**base, "url": "https://example.com/", "event_types": ["sent"]}, "'sent' is not one of"),
        (
            {**base, "url": "https://example.com/", "sending_stream": "both"},
            "sending_stream must be",
        ),
        ({**base, "url": "https://example.com/", "domain_id": 999}, "domain_id must be one of"),
        ({"url": "https://example.com/", "webhook_type": "campaigns"}, "not available"),
    ]
    for fields, problem in cases:
        answer = live.client.post(path, json={"webhook": fields}, headers=bearer(token))
        assert answer.status_code == 422, fields
        assert problem in answer.json()["error"], (fields, answer.json())
    made = live.client.post(
        path,
        json={"webhook": {**base, "url": "https://user:pw@hooks.example.com/in?key=s"}},
        headers=bearer(token),
    ).json()["data"]
    assert live.client.get(path, headers=bearer(token)).json()["data"] == [
        {k: v for k, v in made.items() if k != "signing_secret"}
    ]
    changed = live.client.patch(
        f"{path}/{made['id']}",
        json={"webhook": {"event_types": ["bounce", "delivery"]}},
        headers=bearer(token),
    )
    assert changed.json()["data"]["event_types"] == ["delivery", "bounce"]
    rotated = live.client.post(f"{path}/{made['id']}/rotate_secret", headers=bearer(token)).json()[
        "data"
    ]
    assert len(rotated["signing_secret"]) == 32
    assert rotated["signing_secret"] != made["signing_secret"]
    other = live.client.get(f"/api/accounts/{owner + 1}/webhooks", headers=bearer(token))
    assert other.status_code == 404
    entries = live.client.get(f"/api/accounts/{owner}/audit_log", headers=bearer(token)).json()[
        "data"
    ]
    created = next(e for e in entries if e["event"] == "activity_log.webhook.created")
    assert created["resource"]["name"] == "https://hooks.example.com/in"  # no credentials
    assert live.client.delete(f"{path}/{made['id']}", headers=bearer(token)).status_code == 204
    assert live.client.get(f"{path}/{made['id']}", headers=bearer(token)).status_code == 404
    assert live.client.get(path, headers=bearer(token)).json()["data"] == []


def test_django_anymail_reads_postlines_payloads(
    runtime: Runtime,
    account: tuple[int, str],
    live: LiveServer,
    receiver: Receiver,
    sender: WebhookSender,
) -> None:
    # (imported here: Django wants its settings made before anymail's views are imported)
    from anymail.exceptions import AnymailWebhookValidationFailure
    from anymail.signals import tracking
    from anymail.webhooks.mailtrap import MailtrapTrackingWebhookView
    from django.conf import settings
    from django.test import RequestFactory

    if not settings.configured:
        settings.configure(SECRET_KEY="tests", ALLOWED_HOSTS=["*"], ANYMAIL={})
        django.setup()
    hook = create(
        live,
        account,
        url=receiver.url,
        webhook_type="email_sending",
        sending_stream="transactional",
        event_types=ALL_EVENTS,
    )
    ids = make_history(runtime, account[0])
    complained = runtime.store.get(uuid.UUID(ids["delivered"]))
    assert complained.complain("abuse", "feedback.example")
    runtime.store.save(complained)
    flush(runtime, sender)
    (request,) = receiver.accepted()

    seen: list[Any] = []

    def collect(sender: object, event: Any, esp_name: str, **kwargs: object) -> None:
        seen.append(event)

    view = MailtrapTrackingWebhookView.as_view(tracking_secret=hook["signing_secret"])
    tracking.connect(collect)
    try:
        answer = view(
            RequestFactory().post(
                "/anymail/mailtrap/tracking/",
                data=request.body,
                content_type="application/json",
                headers={"Mailtrap-Signature": request.headers["mailtrap-signature"]},
            )
        )
        with pytest.raises(AnymailWebhookValidationFailure):  # (Django answers 400)
            view(
                RequestFactory().post(
                    "/anymail/mailtrap/tracking/",
                    data=request.body,
                    content_type="application/json",
                    headers={"Mailtrap-Signature": "0" * 64},
                )
            )
    finally:
        tracking.disconnect(collect)
    assert answer.status_code == 200
    kinds = sorted(e.event_type for e in seen)
    assert kinds == sorted(
        [
            "delivered",
            "bounced",
            "deferred",  # soft bounce
            "rejected",
            "deferred",  # suspension
            "opened",
            "clicked",
            "unsubscribed",
            "complained",
        ]
    )
    bounced = next(e for e in seen if e.event_type == "bounced")
    assert (bounced.message_id, bounced.recipient) == (ids["bounced"], "bounced@example.net")
    assert bounced.mta_response == "5.1.1 User unknown"
    clicked = next(e for e in seen if e.event_type == "clicked")
    assert clicked.click_url == "https://shop.example/a"
    assert {e.event_id for e in seen} == {e["event_id"] for e in events_of(request)}


def test_a_test_payload_goes_now_and_says_what_the_receiver_answered(
    account: tuple[int, str], live: LiveServer, receiver: Receiver
) -> None:
    owner, token = account
    hook = create(
        live,
        account,
        url=receiver.url,
        webhook_type="email_sending",
        sending_stream="bulk",
        event_types=["delivery"],
        payload_format="jsonlines",
    )
    path = f"/api/accounts/{owner}/webhooks/{hook['id']}/test"
    receiver.statuses = [418]
    failed = live.client.post(path, headers=bearer(token)).json()
    assert (failed["success"], failed["status_code"]) == (False, 418)
    answered = live.client.post(path, headers=bearer(token)).json()
    assert (answered["success"], answered["status_code"]) == (True, 200)
    sample = receiver.received[-1]
    assert sample.headers["mailtrap-signature"] == (
        hmac.new(hook["signing_secret"].encode(), sample.body, hashlib.sha256).hexdigest()
    )
    (event,) = events_of(sample)
    assert (event["event"], event["sending_stream"]) == ("delivery", "bulk")


def test_the_outbox_reads_mail_only_once_a_webhook_wants_it(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    owner, _ = account
    before = send(runtime, owner, "early@example.net")
    runtime.webhook_outbox.catch_up()  # no webhook: it reads past the mail
    assert runtime.webhook_outbox.position() == runtime.store.head()
    fields = {
        "url": "https://hooks.example.com/in",
        "webhook_type": "email_sending",
        "sending_stream": "transactional",
        "event_types": ["reject"],
    }
    created = create_webhook(runtime.store, runtime.secrets, owner, fields, False)
    after = send(runtime, owner, "late@example.net")  # in the same stretch of the log
    runtime.dispatcher.catch_up()
    runtime.committer.submit(
        [outcome(Message.Rejected, m, reason="r") for m in (before, after)]
    ).result(10)
    runtime.webhook_outbox.catch_up()
    assert waiting(runtime.store.db, created.webhook_id) == 1  # the mail accepted after it


def test_a_restart_loses_nothing_and_sends_nothing_twice(
    runtime: Runtime, account: tuple[int, str], receiver: Receiver, tmp_path: Any
) -> None:
    owner, _ = account
    fields = {
        "url": receiver.url,
        "webhook_type": "email_sending",
        "sending_stream": "transactional",
        "event_types": ALL_EVENTS,
    }
    created = create_webhook(runtime.store, runtime.secrets, owner, fields, True)
    first = make_history(runtime, owner)
    runtime.webhook_outbox.catch_up()
    sender = WebhookSender(runtime, SenderSettings(timeout=5, allow_private=True), RETRY_AT_ONCE)
    receiver.statuses = [500]  # the first process's only try fails ...
    asyncio.run(sender.flush())
    asyncio.run(sender.client.close())
    runtime.close()  # ... and it stops with everything still queued

    again = Runtime(runtime.store.url, data_dir=tmp_path, sender_policy="any")
    again.start()
    try:
        second = make_history(again, owner)  # mail while it was down, then while it runs
        again.webhook_outbox.catch_up()
        sender = WebhookSender(again, SenderSettings(timeout=5, allow_private=True), RETRY_AT_ONCE)
        asyncio.run(sender.flush())
        asyncio.run(sender.client.close())
        assert waiting(again.store.db, created.webhook_id) == 0
    finally:
        again.close()
    events = [e for r in receiver.accepted() for e in events_of(r)]
    assert len(events) == len({e["event_id"] for e in events}) == 16
    assert {e["message_id"] for e in events} == {*first.values(), *second.values()}
