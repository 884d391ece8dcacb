import base64
import email
from email import policy

import msgspec

from domain.mime import render
from domain.submission import Draft, Head, validate

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
PDF = base64.b64encode(b"%PDF-1.4 report").decode()


def composed(**fields: object) -> tuple[Head, object]:
    request = {
        "from": {"email": "hello@example.com", "name": "Shop, Inc."},
        "to": [{"email": "user@example.com", "name": "Ann"}, {"email": "b@example.com"}],
        "cc": [{"email": "cc@example.com"}],
        "bcc": [{"email": "hidden@example.com"}],
        "subject": "Your order",
        "text": "Plain body",
        "html": '<p>HTML body <img src="cid:logo"></p>',
    }
    request.update(fields)
    sub = validate(msgspec.convert(request, Draft))
    head = msgspec.structs.replace(
        sub.head, message_id="<abc@example.com>", date="Mon, 23 Nov 2026 18:00:00 +0000"
    )
    return head, sub.body


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def test_headers_and_alternative_parts() -> None:
    raw = render(*composed())
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    assert msg["From"] == '"Shop, Inc." <hello@example.com>'
    assert msg["To"] == "Ann <user@example.com>, b@example.com"
    assert msg["Cc"] == "cc@example.com"
    assert msg["Bcc"] is None
    assert b"hidden@example.com" not in raw
    assert msg["Subject"] == "Your order"
    assert msg["Message-ID"] == "<abc@example.com>"
    assert msg["Date"] == "Mon, 23 Nov 2026 18:00:00 +0000"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    assert msg.get_body(("plain",)).get_content().strip() == "Plain body"
    assert "HTML body" in msg.get_body(("html",)).get_content()


def test_generation_is_deterministic() -> None:
    head, body = composed(attachments=[{"content": PDF, "filename": "r.pdf"}])
    assert render(head, body) == render(head, body)


def test_attachments_and_inline_images() -> None:
    head, body = composed(
        attachments=[
            {"content": PDF, "filename": "report.pdf", "type": "application/pdf"},
            {
                "content": PNG,
                "filename": "logo.png",
                "type": "image/png",
                "disposition": "inline",
                "content_id": "logo",
            },
        ]
    )
    msg = parse(render(head, body))
    assert msg.get_content_type() == "multipart/mixed"
    attachments = list(msg.iter_attachments())
    assert [(a.get_filename(), a.get_content_disposition()) for a in attachments] == [
        ("report.pdf", "attachment"),
    ]
    assert attachments[0].get_content() == b"%PDF-1.4 report"
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    image = next(p for p in related.walk() if p.get_content_type() == "image/png")
    assert image["Content-ID"] == "<logo>"
    assert image.get_content_disposition() == "inline"
    assert image.get_content() == b"\x89PNG\r\n\x1a\nfake"


def test_custom_headers_and_non_ascii() -> None:
    head, body = composed(
        subject="Grüße aus Köln",
        text="Straße",
        html=None,
        headers={"X-Campaign": "Q4", "Message-ID": "<own@example.com>"},
    )
    raw = render(head, body)
    assert raw.isascii()
    msg = parse(raw)
    assert msg["Subject"] == "Grüße aus Köln"
    assert msg["X-Campaign"] == "Q4"
    assert msg.get_all("Message-ID") == ["<own@example.com>"]
    assert msg.get_content().strip() == "Straße"


def test_idn_domains_are_encoded() -> None:
    head, body = composed(to=[{"email": "user@bücher.de"}], cc=None)
    assert parse(render(head, body))["To"] == "user@xn--bcher-kva.de"
