"""Mail submitted through the sending API: wire shapes, validation, and the stored composition.

A request is validated into a `Submission`: a `Head` (addresses, subject, extra headers: what
becomes the RFC 5322 header block) and a `Body` (text, HTML, attachments). Both are stored as
content-addressed blobs; the MIME message is generated from them when it is needed
(`domain.mime.render`), the same way every time. A batch whose requests do not override the
content shares one `Body`.

Error strings follow the Mailtrap sending API, so clients that match on them keep working.
"""

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from domain.addresses import is_valid_address
from domain.limits import DEFAULT_LIMITS, MB, SendLimits

CustomValue = str | int | float | bool


class Address(msgspec.Struct, omit_defaults=True):
    """`{"email": ..., "name": ...}` as sent by clients."""

    email: str | None = None
    name: str | None = None


class Attachment(msgspec.Struct, omit_defaults=True):
    """An attachment as sent by clients; `content` is base64."""

    content: str | None = None
    filename: str | None = None
    type: str | None = None
    disposition: str | None = None
    content_id: str | None = None


class Draft(msgspec.Struct, omit_defaults=True):
    """The body of `POST /api/send`, and one item (or the base) of `POST /api/batch`.

    Every field is optional at this level so that missing fields are reported with the API's
    own error strings rather than a decoder's.
    """

    sender: Address | None = msgspec.field(default=None, name="from")
    to: list[Address] | None = None
    cc: list[Address] | None = None
    bcc: list[Address] | None = None
    reply_to: Address | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: list[Attachment] | None = None
    headers: dict[str, str] | None = None
    custom_variables: dict[str, CustomValue] | None = None
    category: str | None = None
    template_uuid: str | None = None
    template_variables: dict[str, Any] | None = None


class BatchDraft(msgspec.Struct, omit_defaults=True):
    """The body of `POST /api/batch`."""

    base: Draft | None = None
    requests: list[Draft] | None = None


# --- the stored composition ------------------------------------------------------------------


class Mailbox(msgspec.Struct, array_like=True, omit_defaults=True):
    """A validated address with an optional display name."""

    email: str
    name: str | None = None


class Head(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Everything that becomes the header block; shared by all recipients of one request."""

    sender: Mailbox = msgspec.field(name="from")
    to: list[Mailbox] = []
    cc: list[Mailbox] = []
    reply_to: Mailbox | None = None
    subject: str = ""
    headers: list[tuple[str, str]] = []
    message_id: str = ""
    date: str = ""


class Part(msgspec.Struct, omit_defaults=True, kw_only=True):
    """A validated attachment; `content` is base64 without line breaks."""

    filename: str
    content_type: str
    content: str
    disposition: str = "attachment"
    content_id: str | None = None


class Body(msgspec.Struct, omit_defaults=True, kw_only=True):
    """Text, HTML and attachments."""

    text: str | None = None
    html: str | None = None
    parts: list[Part] = []


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str | None
    kind: str  # to | cc | bcc


@dataclass(frozen=True, slots=True)
class Submission:
    """A validated request: one message per recipient, all sharing `head` and `body`."""

    head: Head
    body: Body
    recipients: tuple[Recipient, ...]
    category: str | None
    custom_variables: dict[str, CustomValue]
    size: int

    @property
    def sender(self) -> str:
        return self.head.sender.email


class InvalidSubmission(Exception):
    """The request cannot be accepted; `errors` are the API's error strings."""

    def __init__(self, errors: list[str], status: int = 400) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


# --- validation -------------------------------------------------------------------------------

# Generated from the fields of the request; setting them through `headers` would contradict them.
RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Return-Path",
        "Received",
        "DKIM-Signature",
    )
)
DISPOSITIONS = ("attachment", "inline")
_HEADER_NAME_CHARS = frozenset(chr(c) for c in range(33, 127) if c != ord(":"))
_ECHO_LIMIT = 80


def _echo(value: str) -> str:
    return value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."


def _has_crlf(value: str) -> bool:
    return "\r" in value or "\n" in value


def _size(n: int) -> str:
    return f"{n // MB} MB" if n % MB == 0 else f"{n} bytes"


def _no_type(_filename: str) -> str | None:
    return None


class _Checker:
    """Collects every error of one request, in the order Mailtrap reports them."""

    def __init__(self, limits: SendLimits) -> None:
        self.limits = limits
        self.errors: list[str] = []
        self.too_large = False

    def mailbox(self, field: str, address: Address | None) -> Mailbox | None:
        if address is None or address.email is None:
            return None
        email = address.email.strip()
        if not is_valid_address(email):
            self.errors.append(
                f"'{field}' address is invalid"
                if field == "from"
                else f"'{field}' address '{_echo(email)}' is invalid"
            )
            return None
        name = address.name or None
        if name is not None and _has_crlf(name):
            self.errors.append(f"'{field}' name must not contain CR or LF")
            return None
        return Mailbox(email, name)

    def mailboxes(self, field: str, addresses: list[Address] | None) -> list[Mailbox]:
        if not addresses:
            return []
        if len(addresses) > self.limits.max_recipients_per_list:
            self.errors.append(
                f"'{field}' must not contain more than "
                f"{self.limits.max_recipients_per_list} addresses"
            )
            return []
        out = []
        for address in addresses:
            if address.email is None:
                self.errors.append(f"'{field}' address must have an 'email'")
                continue
            mailbox = self.mailbox(field, address)
            if mailbox is not None:
                out.append(mailbox)
        return out

    def headers(self, headers: dict[str, str] | None, has_reply_to: bool) -> list[tuple[str, str]]:
        if not headers:
            return []
        out = []
        for name, value in headers.items():
            if _has_crlf(name):
                self.errors.append(f"header name '{_echo(name.strip())}' must not contain CR or LF")
            elif not name or not set(name) <= _HEADER_NAME_CHARS:
                self.errors.append(f"header name '{_echo(name)}' is invalid")
            elif name.lower() in RESERVED_HEADERS:
                self.errors.append(f"header '{name}' cannot be set in 'headers'")
            elif name.lower() == "reply-to" and has_reply_to:
                self.errors.append("'reply_to' and the 'Reply-To' header cannot both be set")
            elif _has_crlf(value):
                self.errors.append(f"header '{name}' value must not contain CR or LF")
            elif len(value) > self.limits.max_header_value_length:
                self.errors.append(f"header '{name}' value is too long")
            else:
                out.append((name, value))
        return out

    def parts(
        self, attachments: list[Attachment] | None, guess_type: Callable[[str], str | None]
    ) -> list[Part]:
        out = []
        for number, attachment in enumerate(attachments or (), start=1):
            where = f"attachment {number}"
            errors_before = len(self.errors)
            if not attachment.filename:
                self.errors.append(f"{where}: 'filename' is required")
            if attachment.content is None or attachment.content == "":
                self.errors.append(f"{where}: 'content' is required")
            for field in ("filename", "type", "content_id"):
                value = getattr(attachment, field)
                if value is not None and _has_crlf(value):
                    self.errors.append(f"{where}: '{field}' must not contain CR or LF")
            disposition = attachment.disposition or "attachment"
            if disposition not in DISPOSITIONS:
                self.errors.append(f"{where}: 'disposition' must be 'attachment' or 'inline'")
            content_type = attachment.type or guess_type(attachment.filename or "")
            content_type = content_type or "application/octet-stream"
            if content_type.count("/") != 1 or " " in content_type:
                self.errors.append(f"{where}: 'type' must be a MIME type such as 'image/png'")
            if len(self.errors) > errors_before:
                continue
            content = "".join(attachment.content.split())  # clients may wrap base64 lines
            try:
                binascii.a2b_base64(content, strict_mode=True)
            except (binascii.Error, ValueError):
                self.errors.append(f"{where}: 'content' is not valid base64")
                continue
            out.append(
                Part(
                    filename=attachment.filename,
                    content_type=content_type.lower(),
                    content=content,
                    disposition=disposition,
                    content_id=attachment.content_id or None,
                )
            )
        return out


def _estimated_size(head: Head, body: Body) -> int:
    """Size of the generated message, close enough to enforce the size limit at accept time."""
    size = 600 + len(head.subject) * 4
    for name, value in head.headers:
        size += len(name) + len(value) * 4 + 4
    for mailbox in head.to:
        size += len(mailbox.email) + len(mailbox.name or "") * 4 + 4
    for mailbox in head.cc:
        size += len(mailbox.email) + len(mailbox.name or "") * 4 + 4
    if body.text:
        size += len(body.text) if body.text.isascii() else len(body.text.encode())
    if body.html:
        size += len(body.html) if body.html.isascii() else len(body.html.encode())
    for part in body.parts:
        size += len(part.content) * 78 // 76 + 200
    return size


def validate_body(
    draft: Draft,
    limits: SendLimits = DEFAULT_LIMITS,
    guess_type: Callable[[str], str | None] = _no_type,
) -> Body:
    """The `Body` of a draft, or InvalidSubmission."""
    checker = _Checker(limits)
    body = _body(draft, checker, guess_type)
    if checker.errors:
        raise InvalidSubmission(checker.errors)
    return body


def _body(draft: Draft, checker: _Checker, guess_type: Callable[[str], str | None]) -> Body:
    if not draft.text and not draft.html and draft.template_uuid is None:
        checker.errors.append("must specify either text or html body")
    return Body(
        text=draft.text or None,
        html=draft.html or None,
        parts=checker.parts(draft.attachments, guess_type),
    )


def validate(
    draft: Draft,
    limits: SendLimits = DEFAULT_LIMITS,
    *,
    body: Body | None = None,
    guess_type: Callable[[str], str | None] = _no_type,
) -> Submission:
    """Validate one send request. `body`, when given, is the already validated shared content."""
    if draft.template_uuid is not None:
        raise InvalidSubmission(["templates are not available yet"])
    checker = _Checker(limits)
    sender = None
    if draft.sender is None or draft.sender.email is None:
        checker.errors.append("'from' is required")
    else:
        sender = checker.mailbox("from", draft.sender)
    to = checker.mailboxes("to", draft.to)
    cc = checker.mailboxes("cc", draft.cc)
    bcc = checker.mailboxes("bcc", draft.bcc)
    if not (draft.to or draft.cc or draft.bcc):
        checker.errors.append("'to', 'cc' or 'bcc' address is required")
    reply_to = checker.mailbox("reply_to", draft.reply_to)
    if not draft.subject:
        checker.errors.append("'subject' is required")
    elif _has_crlf(draft.subject):
        checker.errors.append("'subject' must not contain CR or LF")
    if body is None:
        body = _body(draft, checker, guess_type)
    headers = checker.headers(draft.headers, has_reply_to=draft.reply_to is not None)
    category = draft.category or None
    if category is not None and len(category) > limits.max_category_length:
        checker.errors.append(
            f"'category' must not be longer than {limits.max_category_length} characters"
        )
    custom_variables = draft.custom_variables or {}
    if len(msgspec.json.encode(custom_variables)) > limits.max_custom_variables_bytes:
        checker.errors.append(
            f"'custom_variables' must not exceed {limits.max_custom_variables_bytes} bytes as JSON"
        )
    if checker.errors or sender is None:
        raise InvalidSubmission(checker.errors)
    head = Head(
        sender=sender,
        to=to,
        cc=cc,
        reply_to=reply_to,
        subject=draft.subject or "",
        headers=headers,
    )
    size = _estimated_size(head, body)
    if size > limits.max_message_bytes:
        raise InvalidSubmission(
            [f"message size exceeds the limit of {_size(limits.max_message_bytes)}"], status=413
        )
    recipients = tuple(
        Recipient(m.email, m.name, kind)
        for kind, mailboxes in (("to", to), ("cc", cc), ("bcc", bcc))
        for m in mailboxes
    )
    return Submission(
        head=head,
        body=body,
        recipients=recipients,
        category=category,
        custom_variables=custom_variables,
        size=size,
    )


CONTENT_FIELDS = ("text", "html", "attachments", "template_uuid")


def merge(base: Draft, item: Draft) -> Draft:
    """A batch item over its base: every field the item sets replaces the base's, wholesale."""
    overrides = {
        field: value
        for field in Draft.__struct_fields__
        if (value := getattr(item, field)) is not None
    }
    return msgspec.structs.replace(base, **overrides) if overrides else base


def overrides_content(item: Draft) -> bool:
    """True when a batch item brings its own text, HTML, attachments or template."""
    return any(getattr(item, field) is not None for field in CONTENT_FIELDS)
