"""Webhook settings, payloads and redaction: pure rules."""

import uuid
from datetime import UTC, datetime

import pytest

from domain.message import Message, follow_up
from domain.webhooks import (
    InvalidWebhook,
    MessageFacts,
    checked_changes,
    checked_settings,
    event_id,
    message_payload,
    redacted_changes,
    redacted_url,
)

FACTS = MessageFacts(1, "bulk", "r@example.net", "example.com", None, {})


def test_a_new_webhook_gets_defaults_and_its_event_types_in_order() -> None:
    settings = checked_settings(
        {
            "url": " https://hooks.example.com/in ",
            "webhook_type": "email_sending",
            "sending_stream": "bulk",
            "event_types": ["click", "delivery", "click"],
        }
    )
    assert settings == {
        "url": "https://hooks.example.com/in",
        "webhook_type": "email_sending",
        "active": True,
        "payload_format": "json",
        "sending_stream": "bulk",
        "domain_id": None,
        "event_types": ["delivery", "click"],
    }
    audit = checked_settings({"url": "https://h.example/", "webhook_type": "audit_log"})
    assert (audit["sending_stream"], audit["event_types"]) == (None, [])


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(InvalidWebhook) as caught:
        checked_settings(
            {"webhook_type": "email_sending", "active": "yes", "payload_format": "xml"}
        )
    assert caught.value.problems == [
        "url is required",
        "active must be true or false",
        "payload_format must be one of json, jsonlines",
        "sending_stream must be one of transactional, bulk",
        "event_types must list one or more of delivery, soft_bounce, bounce, suspension, "
        "unsubscribe, open, spam_complaint, click, reject",
    ]
    current = checked_settings({"url": "https://h.example/", "webhook_type": "audit_log"})
    with pytest.raises(InvalidWebhook, match="only email_sending webhooks have event types"):
        checked_changes(current, {"event_types": ["open"]})
    with pytest.raises(InvalidWebhook, match="webhook_type: cannot be changed"):
        checked_changes(current, {"webhook_type": "email_sending"})


def test_payloads_name_the_event_as_mailtrap_does() -> None:
    message = uuid.uuid4()
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    soft = follow_up(
        Message.SoftBounced,
        message,
        3,
        now,
        attempt=1,
        mx="mx.example.net",
        sending_ip=None,
        mailbox_provider="Other",
        code=None,  # a timeout: no reply code
        enhanced_code=None,
        response="timed out",
        bounce_category="timeout",
        next_attempt_at=now,
    )
    payload = message_payload(soft, FACTS)
    assert payload == {
        "event": "soft bounce",
        "message_id": str(message),
        "sending_stream": "bulk",
        "email": "r@example.net",
        "sending_domain_name": "example.com",
        "timestamp": int(now.timestamp()),
        "event_id": event_id(message, 3),
        "response": "timed out",
        "bounce_category": "timeout",
    }
    spam = follow_up(Message.Complained, message, 4, now, feedback_type="abuse", reporter=None)
    assert message_payload(spam, FACTS)["event"] == "spam"
    assert event_id(message, 3) != event_id(message, 4)


def test_urls_lose_their_secrets_in_what_people_read() -> None:
    assert redacted_url("https://user:pw@hooks.example.com:8443/in?token=s#x") == (
        "https://hooks.example.com:8443/in"
    )
    changes = {"url": {"from": "https://a:b@x.example/", "to": "https://y.example/?k=1"}}
    assert redacted_changes(changes) == {
        "url": {"from": "https://x.example/", "to": "https://y.example/"}
    }
