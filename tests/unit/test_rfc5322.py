"""Raw messages: what the relay reads from them and what it adds or strips."""

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from domain.rfc5322 import (
    custom_variables,
    deliverable,
    has_bare_newline,
    header_block,
    inspect,
    received_header,
    strip_headers,
)

RAW = (
    b"From: a@example.com\r\n"
    b"X-MT-Category: welcome\r\n"
    b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n"
    b'X-MT-Custom-Variables: {"user": "42",\r\n'
    b' "list": [1, 2]}\r\n'
    b"DKIM-Signature: v=1; a=rsa-sha256;\r\n"
    b"\tb=abc\r\n"
    b"\r\n"
    b"X-MT-Category: not a header, body text\r\n"
)


def test_inspect_reads_subject_category_and_custom_variables() -> None:
    facts = inspect(RAW)
    assert facts.subject == "Grüße"
    assert facts.category == "welcome"
    assert facts.custom_variables == {"user": "42", "list": 1}  # arrays keep the first element


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        "[1, 2]",
        '"a string"',
        '{"k": "' + "v" * 1000 + '"}',  # over 1000 bytes
        "{bad",
    ],
)
def test_invalid_custom_variables_are_ignored(value: str) -> None:
    assert custom_variables(value, 1000) == {}


def test_custom_variables_limit_is_inclusive() -> None:
    value = '{"k": "' + "v" * 991 + '"}'
    assert len(value) == 1000
    assert custom_variables(value, 1000) == {"k": "v" * 991}


def test_too_long_category_is_ignored() -> None:
    assert inspect(b"X-MT-Category: " + b"c" * 256 + b"\r\n\r\n").category is None
    assert inspect(b"Subject: s\r\n\r\nbody").category is None


def test_strip_headers_removes_metadata_and_keeps_every_other_byte() -> None:
    stripped = strip_headers(RAW)
    assert stripped == (
        b"From: a@example.com\r\n"
        b"Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256;\r\n"
        b"\tb=abc\r\n"
        b"\r\n"
        b"X-MT-Category: not a header, body text\r\n"
    )
    plain = b"From: a@example.com\r\n\r\nbody\r\n"
    assert strip_headers(plain) is plain


def test_deliverable_bytes_are_the_trace_header_and_the_message_without_metadata() -> None:
    head = b"Received: from a ([192.0.2.1])\r\n\tby b (Postline) with ESMTPA id q;\r\n\tdate\r\n"
    assert deliverable(head, RAW) == head + strip_headers(RAW)
    assert b"X-MT-" not in deliverable(head, RAW).partition(b"\r\n\r\n")[0]


def test_first_of_repeated_fields_counts_and_raw_utf8_is_read_as_utf8() -> None:
    facts = inspect(
        "Subject: Grüße aus Köln\r\nX-MT-Category: first\r\nX-MT-Category: second\r\n\r\n".encode()
    )
    assert (facts.subject, facts.category) == ("Grüße aus Köln", "first")


def test_header_block_without_a_body() -> None:
    assert header_block(b"Subject: x\r\n") == b"Subject: x\r\n"
    assert header_block(b"\r\nbody") == b""


@pytest.mark.parametrize(
    ("data", "bare"),
    [
        (b"a\r\nb\r\n", False),
        (b"", False),
        (b"a\nb\r\n", True),
        (b"a\r\nb\rc\r\n", True),
        (b"line\r\n.\n", True),
    ],
)
def test_bare_newlines(data: bytes, bare: bool) -> None:
    assert has_bare_newline(data) is bare


def test_received_header_is_safe_and_names_the_protocol() -> None:
    header = received_header(
        helo="evil\r\nBcc: x@example.com (x)",
        client_ip="192.0.2.1",
        hostname="relay.example.com",
        tls=True,
        authenticated=True,
        esmtp=True,
        queue_id="abc123",
        date=format_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    )
    assert header == (
        b"Received: from evil??Bcc:?x@example.com??x? ([192.0.2.1])\r\n"
        b"\tby relay.example.com (Postline) with ESMTPSA id abc123;\r\n"
        b"\tFri, 02 Jan 2026 03:04:05 +0000\r\n"
    )
    plain = received_header(
        helo=None,
        client_ip=None,
        hostname="h",
        tls=False,
        authenticated=False,
        esmtp=False,
        queue_id="q",
        date="Fri, 02 Jan 2026 00:00:00 +0000",
    )
    assert plain.startswith(
        b"Received: from unknown (unknown)\r\n\tby h (Postline) with SMTP id q;"
    )


def test_the_from_domain_of_a_raw_message() -> None:
    first = inspect(b'From: "A, B" <a@Mail.Example.ORG>\r\nSubject: x\r\n\r\nbody')
    assert first.from_domains == ("mail.example.org",)
    assert inspect(b"From:\r\n Ann <ann@example.com>\r\n\r\n").from_domains == ("example.com",)
    several = inspect(b"From: a@example.org, b@bank.example\r\nFrom: c@x.example\r\n\r\n")
    assert several.from_domains == ("example.org", "bank.example", "x.example")
    assert inspect(b"Subject: no author\r\n\r\n").from_domains == ()
