"""Spam complaints as feedback loops send them: RFC 5965 reports (ARF), read with `email`.

A report is `multipart/report; report-type=feedback-report`: a human-readable part, a
`message/feedback-report` part (`Feedback-Type`, `User-Agent`, `Original-Rcpt-To`, ...) and
the original message or its headers. The original leads back to the message: its
`X-Postline-ID` (bulk mail carries it, one per recipient), else its `Message-ID`, which
Postline makes from the first recipient's message id (`<hex@domain>`): every recipient of a
submission shares it, so that way needs the report's `Original-Rcpt-To` to say whose copy it was.
"""

import email
import email.policy
import email.utils
import uuid
from dataclasses import dataclass
from email.message import EmailMessage, Message

MESSAGE_ID_HEADER = "X-Postline-ID"


class NotAReport(ValueError):
    """Bytes that are not a feedback report, or one that names no message of ours."""


@dataclass(frozen=True, slots=True)
class Complaint:
    message_id: uuid.UUID
    feedback_type: str  # abuse, fraud, virus, other, ...
    recipient: str | None  # Original-Rcpt-To, when the reporter tells
    reporter: str | None  # the report's User-Agent or Reporting-MTA
    author: str  # the original's From: address (the engine checks it is the message's sender's)
    by_message_id: bool  # found through the shared Message-ID, not the recipient's own header


def read_report(data: bytes) -> Complaint:
    """The complaint a report makes; NotAReport when it is not one or names no message."""
    report = email.message_from_bytes(data, policy=email.policy.default)
    if report.get_content_type() != "multipart/report":
        raise NotAReport(f"not a feedback report ({report.get_content_type()})")
    fields: Message | None = None
    original: Message | None = None
    for part in report.iter_parts() if isinstance(report, EmailMessage) else ():
        kind = part.get_content_type()
        if kind == "message/feedback-report":
            fields = _fields(part)
        elif kind in ("message/rfc822", "text/rfc822-headers"):
            original = _original(part)
    if fields is None:
        raise NotAReport("no message/feedback-report part")
    if original is None:
        raise NotAReport("the report does not include the original message or its headers")
    found = _message_id(original)
    if found is None:
        raise NotAReport("the original message is not one Postline sent")
    message_id, by_message_id = found
    recipient = fields.get("Original-Rcpt-To")
    return Complaint(
        author=email.utils.parseaddr(str(original.get("From", "")))[1],
        by_message_id=by_message_id,
        message_id=message_id,
        feedback_type=str(fields.get("Feedback-Type", "other")).strip().lower(),
        recipient=str(recipient).strip().removeprefix("rfc822;").strip() if recipient else None,
        reporter=str(fields.get("User-Agent") or fields.get("Reporting-MTA") or "") or None,
    )


def _fields(part: Message) -> Message:
    """The report's fields: a header block, whichever way the parser delivered it."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:  # parsed as a message: its headers are the fields
        first = payload[0]
        return first if isinstance(first, Message) else part
    raw = part.get_payload(decode=True) or b""
    return email.message_from_bytes(bytes(raw), policy=email.policy.default)


def _original(part: Message) -> Message:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    raw = part.get_payload(decode=True) or b""
    return email.message_from_bytes(bytes(raw), policy=email.policy.default)


def _message_id(original: Message) -> tuple[uuid.UUID, bool] | None:
    """The id the original names, and whether it came from the shared Message-ID."""
    for value, local in (
        (original.get(MESSAGE_ID_HEADER), False),
        (original.get("Message-ID"), True),
    ):
        if not value:
            continue
        text = str(value).strip().strip("<>")
        if local:
            text = text.partition("@")[0]
        try:
            return uuid.UUID(text), local
        except ValueError:
            continue
    return None
