"""Email address syntax checks.

Hand-written on purpose: the domain layer stays free of third-party code, and this check runs
once per recipient on the accept path (up to 3,000 per request), where `email-validator` costs
35-60 us per address. The rules are those of RFC 5321/5322 dot-atoms with RFC 6531 UTF-8 local
parts and IDNA domains; quoted local parts and address literals are refused, as mailbox
providers do.
"""

import re
from functools import lru_cache

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF"
_LOCAL = re.compile(rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Controls and every kind of white space (SMTP clients refuse them in an address).
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s]")
_ASCII_TLD = re.compile(r"[A-Za-z][A-Za-z0-9-]*|xn--[A-Za-z0-9-]+")

MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64


@lru_cache(maxsize=8192)
def ascii_domain(domain: str) -> str | None:
    """The domain in its ASCII (IDNA) form, or None when it is not a valid host name."""
    if domain.endswith("."):
        return None
    try:
        ascii_form = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return None
    labels = ascii_form.split(".")
    if len(labels) < 2 or len(ascii_form) > 253:
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if not _ASCII_TLD.fullmatch(labels[-1]):
        return None
    return ascii_form.lower()


def is_valid_address(address: str) -> bool:
    """True when `address` is a deliverable-looking `local@domain` mailbox."""
    if not address or len(address) > MAX_ADDRESS_LENGTH or _FORBIDDEN.search(address):
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or len(local.encode("utf-8")) > MAX_LOCAL_LENGTH:
        return False
    if not _LOCAL.fullmatch(local):
        return False
    return ascii_domain(domain) is not None


def comparable_domain(domain: str) -> str:
    """A domain as policies compare it: ASCII (IDNA) and lower case, whatever form it came in."""
    return ascii_domain(domain) or domain.lower()


def domain_of(address: str) -> str:
    """The lower-cased domain part of a valid address."""
    return address.rpartition("@")[2].lower()
