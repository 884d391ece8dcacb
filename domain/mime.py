"""Generate the RFC 5322 / MIME message of a stored composition, with the stdlib `email` package.

Generation is deterministic: the same head and body give the same bytes (boundaries are derived
from the content), so the message can be generated wherever it is needed (the MTA worker, the raw
download) and is the same each time.
"""

import base64
import hashlib
from collections.abc import Callable
from email import policy
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage

import msgspec

from domain.addresses import ascii_domain
from domain.message import FORMAT_COMPOSITION
from domain.rfc5322 import deliverable
from domain.submission import Body, Head, Mailbox, Part

_ENCODER = msgspec.json.Encoder()
_HEAD = msgspec.json.Decoder(Head)
_BODY = msgspec.json.Decoder(Body)


def message_bytes(
    format: str, head: bytes, body: bytes, html: Callable[[str], str] | None = None
) -> bytes:
    """A stored message's bytes as sent: a composition (JSON head and body) rendered, or a
    received message's header prefix and bytes put together (`Message.format`). `html`
    changes a composition's HTML part (tracking) before it is rendered."""
    if format == FORMAT_COMPOSITION:
        composed = _BODY.decode(body)
        if html is not None and composed.html:
            composed = msgspec.structs.replace(composed, html=html(composed.html))
        return render(_HEAD.decode(head), composed)
    return deliverable(head, body)


def _header_address(mailbox: Mailbox, utf8: bool) -> HeaderAddress:
    local, _, domain = mailbox.email.rpartition("@")
    if not utf8:
        domain = ascii_domain(domain) or domain
    return HeaderAddress(display_name=mailbox.name or "", username=local, domain=domain)


def _needs_smtputf8(head: Head) -> bool:
    mailboxes = [head.sender, *head.to, *head.cc]
    if head.reply_to is not None:
        mailboxes.append(head.reply_to)
    return any(not m.email.rpartition("@")[0].isascii() for m in mailboxes)


def render(head: Head, body: Body) -> bytes:
    """The message as bytes with CRLF line ends, ready for DKIM signing and SMTP DATA."""
    utf8 = _needs_smtputf8(head)
    msg = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    msg["From"] = _header_address(head.sender, utf8)
    if head.to:
        msg["To"] = [_header_address(m, utf8) for m in head.to]
    if head.cc:
        msg["Cc"] = [_header_address(m, utf8) for m in head.cc]
    if head.reply_to is not None:
        msg["Reply-To"] = _header_address(head.reply_to, utf8)
    msg["Subject"] = head.subject
    msg["Date"] = head.date
    custom = {name.lower() for name, _ in head.headers}
    if "message-id" not in custom:
        msg["Message-ID"] = head.message_id
    for name, value in head.headers:
        msg[name] = value
    _set_content(msg, body)
    seed = hashlib.sha256(_ENCODER.encode(head) + _ENCODER.encode(body)).hexdigest()[:32]
    for number, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"=_pl{number}_{seed}")
    return msg.as_bytes()


def _set_content(msg: EmailMessage, body: Body) -> None:
    if body.text is not None:
        msg.set_content(body.text, subtype="plain", cte=_text_cte(body.text))
        if body.html is not None:
            msg.add_alternative(body.html, subtype="html", cte=_text_cte(body.html))
    elif body.html is not None:
        msg.set_content(body.html, subtype="html", cte=_text_cte(body.html))
    html_part = msg.get_body(preferencelist=("html",)) if body.html is not None else None
    related = [p for p in body.parts if _is_related(p) and html_part is not None]
    # Inline images referenced by cid go next to the HTML (multipart/related) first, before
    # attachments turn the message into multipart/mixed.
    for part in related:
        maintype, _, subtype = part.content_type.partition("/")
        html_part.add_related(
            base64.b64decode(part.content),
            maintype,
            subtype,
            cid=_cid(part),
            disposition="inline",
            filename=part.filename,
        )
    for part in body.parts:
        if part in related:
            continue
        maintype, _, subtype = part.content_type.partition("/")
        msg.add_attachment(
            base64.b64decode(part.content),
            maintype,
            subtype,
            cid=_cid(part),
            disposition=part.disposition,
            filename=part.filename,
        )


def _is_related(part: Part) -> bool:
    return part.disposition == "inline" and part.content_id is not None


def _cid(part: Part) -> str | None:
    return f"<{part.content_id.strip('<>')}>" if part.content_id else None


def _text_cte(text: str) -> str:
    """Quoted-printable for text that is not plain short-lined ASCII, else 7bit."""
    if text.isascii() and all(len(line) <= 990 for line in text.splitlines()):
        return "7bit"
    return "quoted-printable"
