"""Messages received as raw RFC 5322 bytes (SMTP): what we read from them, and what we add.

A relayed message is kept byte for byte as the client sent it: only a `Received:` header is
prepended (stored apart, as the message's head) and the `X-MT-*` metadata headers are removed
when the message is delivered. Only the header block is parsed, once, on the accept path.
"""

import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.utils import getaddresses
from typing import Any

import msgspec

from domain.limits import DEFAULT_LIMITS, SendLimits

CATEGORY_HEADER = "X-MT-Category"
CUSTOM_VARIABLES_HEADER = "X-MT-Custom-Variables"
# Read into the message's metadata, removed before delivery (seen by the sender, not the
# recipient).
METADATA_HEADERS = frozenset({CATEGORY_HEADER.lower(), CUSTOM_VARIABLES_HEADER.lower()})

# The three fields the accept path reads, with their folded continuation lines. A regex over
# the header block rather than `email.parser`: it reads only what is needed, in 3 us instead
# of 17 us per message (the relay's whole budget is a few hundred), and takes raw UTF-8 header
# values (SMTPUTF8) as UTF-8. Encoded words are still decoded by the `email` package.
_FIELDS = re.compile(
    rb"^(from|subject|x-mt-category|x-mt-custom-variables)[ \t]*:[ \t]*((?:[^\r\n]|\r\n[ \t])*)",
    re.IGNORECASE | re.MULTILINE,
)
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class RawFacts:
    """What the accept path needs from a raw message's header."""

    subject: str | None
    category: str | None
    custom_variables: dict[str, Any] = field(default_factory=dict)
    from_domains: tuple[str, ...] = ()  # the domain of every From: address, lower case


def header_block(data: bytes) -> bytes:
    """The header section (up to and including the line break before the empty line)."""
    if data.startswith(b"\r\n"):
        return b""  # no header at all: everything is body
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[: end + 2]
    return data  # headers only, no body


def has_bare_newline(data: bytes) -> bool:
    """True when a line ends in a bare LF (or CR): RFC 5321 allows only CRLF.

    Refusing these closes the door to SMTP smuggling (a `<LF>.<LF>` that a later hop reads as
    the end of DATA) instead of guessing which line end the client meant.
    """
    pairs = data.count(b"\r\n")
    return data.count(b"\n") != pairs or data.count(b"\r") != pairs


def inspect(data: bytes, limits: SendLimits = DEFAULT_LIMITS) -> RawFacts:
    """Subject, category and custom variables of a raw message (invalid metadata is ignored)."""
    fields: dict[bytes, bytes] = {}
    authors: list[str] = []  # every From: field, should there be several
    for name, value in _FIELDS.findall(header_block(data)):
        fields.setdefault(name.lower(), value)  # the first of each counts, as with Mailtrap
        if name.lower() == b"from":
            authors.append(_unfold(value.decode("utf-8", "replace")))
    subject = fields.get(b"subject")
    category = fields.get(b"x-mt-category")
    text_category = _unfold(category.decode("utf-8", "replace")) if category else None
    if text_category is not None and len(text_category) > limits.max_category_length:
        text_category = None
    variables = fields.get(b"x-mt-custom-variables")
    from_domains = tuple(
        address.rpartition("@")[2].lower() for _, address in getaddresses(authors) if address
    )
    return RawFacts(
        from_domains=from_domains,
        subject=_decoded(subject.decode("utf-8", "replace")) if subject is not None else None,
        category=text_category or None,
        custom_variables=custom_variables(
            variables.decode("utf-8", "replace") if variables is not None else None,
            limits.max_custom_variables_bytes,
        ),
    )


def custom_variables(value: Any, max_bytes: int) -> dict[str, Any]:
    """`X-MT-Custom-Variables` as Mailtrap reads it.

    A JSON object of at most `max_bytes`; an array value keeps only its first element;
    anything else (not JSON, not an object, too long) is ignored: `{}`.
    """
    if value is None:
        return {}
    text = _unfold(str(value))
    raw = text.encode("utf-8")
    if len(raw) > max_bytes:
        return {}
    try:
        decoded = _DECODER.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(decoded, dict):
        return {}
    result = {}
    for key, item in decoded.items():
        if isinstance(item, list):
            if not item:
                continue
            item = item[0]
        result[key] = item
    return result


def received_header(
    *,
    helo: str | None,
    client_ip: str | None,
    hostname: str,
    tls: bool,
    authenticated: bool,
    esmtp: bool,
    queue_id: str,
    date: str,
) -> bytes:
    """The trace header a relay prepends (RFC 5321 §4.4; protocol names per RFC 3848).

    `date` is an RFC 5322 date-time (`email.utils.format_datetime`).
    """
    protocol = (
        ("ESMTP" if esmtp else "SMTP") + ("S" if tls else "") + ("A" if authenticated else "")
    )
    source = _printable(helo or "unknown")
    where = f"[{client_ip}]" if client_ip else "unknown"
    line = (
        f"Received: from {source} ({where})\r\n"
        f"\tby {_printable(hostname)} (Postline) with {protocol} id {queue_id};\r\n"
        f"\t{date}\r\n"
    )
    return line.encode("ascii")


def deliverable(head: bytes, raw: bytes) -> bytes:
    """The bytes to deliver for a relayed message: our trace header, then the message as sent
    without its `X-MT-*` metadata headers."""
    return head + strip_headers(raw)


def strip_headers(data: bytes, names: frozenset[str] = METADATA_HEADERS) -> bytes:
    """`data` without the header fields in `names` (lower case), every other byte kept.

    Written by hand because the `email` package re-serialises what it parses, and a relay must
    not change the bytes it passes on (a client's own DKIM signature covers them).
    """
    header = header_block(data)
    if not header:
        return data
    lines = header.split(b"\r\n")[:-1]
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):  # continuation of the previous field
            if not dropping:
                kept.append(line)
            continue
        name = line.partition(b":")[0].strip().lower()
        dropping = name.decode("ascii", "replace") in names
        if not dropping:
            kept.append(line)
    if len(kept) == len(lines):
        return data
    rest = data[len(header) :]
    return b"".join(line + b"\r\n" for line in kept) + rest


def _decoded(value: Any) -> str:
    """A header value with RFC 2047 encoded words decoded; undecodable parts kept as sent."""
    text = _unfold(str(value))
    try:
        return str(make_header(decode_header(text)))
    except (UnicodeError, LookupError, ValueError):
        return text


def _unfold(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def _printable(value: str) -> str:
    """Client-supplied text made safe for a header: printable ASCII, no parentheses."""
    cleaned = "".join(c if 33 <= ord(c) < 127 and c not in "()" else "?" for c in value)
    return cleaned[:255] or "unknown"
