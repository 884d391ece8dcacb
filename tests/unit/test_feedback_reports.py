"""Reading RFC 5965 feedback reports (domain.feedback_reports)."""

import uuid

import pytest

from domain.feedback_reports import NotAReport, read_report

ID = uuid.UUID("0190d2a8-7c3e-7b4e-9b1a-1234567890ab")


def report(original_type: str, original: str, fields: str = "Feedback-Type: abuse\r\n") -> bytes:
    return (
        "From: fbl@isp.example\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nComplaint.\r\n"
        f"--b\r\nContent-Type: message/feedback-report\r\n\r\n{fields}\r\n"
        f"--b\r\nContent-Type: {original_type}\r\n\r\n{original}\r\n--b--\r\n"
    ).encode()


def test_the_message_id_header_of_a_bulk_copy_names_the_message() -> None:
    complaint = read_report(
        report(
            "message/rfc822",
            f"X-Postline-ID: {ID}\r\nMessage-ID: <other@x>\r\nSubject: s\r\n\r\nbody",
            "Feedback-Type: Abuse\r\nUser-Agent: ISP-FBL/2\r\n"
            "Original-Rcpt-To: rfc822; Ann@example.net\r\n",
        )
    )
    assert (complaint.message_id, complaint.feedback_type) == (ID, "abuse")
    assert (complaint.recipient, complaint.reporter) == ("Ann@example.net", "ISP-FBL/2")


def test_headers_only_and_the_message_id_fallback() -> None:
    complaint = read_report(
        report("text/rfc822-headers", f"Message-ID: <{ID.hex}@example.org>\r\nSubject: s\r\n")
    )
    assert (complaint.message_id, complaint.recipient, complaint.by_message_id) == (ID, None, True)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"Subject: hi\r\n\r\nnot a report\r\n", "not a feedback report"),
        (report("message/rfc822", "Message-ID: <x@y>\r\n\r\nb"), "not one Postline sent"),
    ],
)
def test_what_is_not_a_complaint_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(NotAReport, match=reason):
        read_report(data)
