"""SMTP reply wording: enhanced status codes everywhere they belong."""

import pytest

from domain.smtp_replies import closes_connection, worded


@pytest.mark.parametrize(
    ("stock", "ours"),
    [
        ("250 OK", "250 2.0.0 Ok"),
        ("552 Error: Too much mail data", "552 5.3.4 Message size exceeds fixed limit"),
        ("503 Error: need MAIL command", "503 5.5.1 Error: need MAIL command"),
        ("501 Syntax: HELO hostname", "501 5.5.4 Syntax: HELO hostname"),
        ("538 5.7.11 Encryption required", "538 5.7.11 Encryption required"),  # has one
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
        ("250-PIPELINING", "250-PIPELINING"),  # EHLO lines are left alone
        ("599 Odd", "599 5.0.0 Odd"),
    ],
)
def test_stock_replies_get_enhanced_codes(stock: str, ours: str) -> None:
    assert worded(stock) == ours


def test_malformed_address_means_the_sender_when_answering_mail_from() -> None:
    stock = "553 5.1.3 Error: malformed address"
    assert worded(stock) == stock
    assert worded(stock, sender=True) == "553 5.1.7 Bad sender address syntax"


def test_421_closes_the_connection() -> None:
    assert closes_connection("421 4.4.2 relay Error: timeout exceeded")
    assert not closes_connection("451 4.3.0 try later")
