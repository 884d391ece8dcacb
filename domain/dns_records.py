"""The DNS records a sending domain publishes, and how what DNS answers is judged.

For a self-hosted installation (spec §6.1, keys as Mailtrap names them):

| key | type | name | value | required |
|---|---|---|---|---|
| verification | TXT | `_postline-verification` | `postline-verification=<token>` | yes |
| spf | TXT | (the domain) | `v=spf1 <mechanism> ~all` (any SPF record with the mechanism) | yes |
| dkim1, dkim2 | TXT | `<selector>._domainkey` | `v=DKIM1; k=rsa; p=<key>` | unless pending |
| dmarc | TXT | `_dmarc` | `v=DMARC1; p=none;` (any DMARC policy) | yes |
| return_path | CNAME | `<label>` | the installation's bounce host | when configured |
| link_verification | CNAME | `mt-link` | the installation's tracking host | when configured |

Answers are normalised before they are compared: TXT strings split by the DNS server are
joined, surrounding quotes dropped, whitespace collapsed; names lose their trailing dot and
case. A record is `pass`, `fail` (something else is there; `problem` says what), `missing`
(nothing there), `unchecked` (never looked at) or `network_error` (the lookup failed).
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

VERIFICATION_LABEL = "_postline-verification"
VERIFICATION_PREFIX = "postline-verification="
SELECTORS = ("pl1", "pl2")  # dkim1 signs; dkim2 is published ahead, for rotation


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """What an installation asks domains to point at."""

    spf_mechanism: str  # authorises the MTA's addresses, e.g. "a:mta.example.net"
    return_path_host: str | None = None  # CNAME target of the return-path record
    return_path_label: str = "pm-bounces"
    tracking_host: str | None = None  # CNAME target of the click-tracking host


class DkimKey(NamedTuple):
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    public: str  # the TXT record's p=
    pending: bool = False  # rotated in, not signing until DNS has it: not required yet


@dataclass(frozen=True, slots=True)
class ExpectedRecord:
    key: str
    type: str  # TXT | CNAME
    name: str  # relative to the domain ("" for the domain itself)
    domain: str  # the full name
    value: str
    required: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # pass | fail | missing
    problem: str | None = None


def expected_records(
    domain: str, token: str, dkim: Sequence[DkimKey], settings: DnsSettings
) -> list[ExpectedRecord]:
    """The records `domain` must publish."""

    def record(key: str, kind: str, label: str, value: str, required: bool) -> ExpectedRecord:
        full = f"{label}.{domain}" if label else domain
        return ExpectedRecord(key, kind, label, full, value, required)

    records = [
        record("verification", "TXT", VERIFICATION_LABEL, VERIFICATION_PREFIX + token, True),
        record("spf", "TXT", "", f"v=spf1 {settings.spf_mechanism} ~all", True),
    ]
    for number, key in enumerate(dkim, 1):
        kind = "ed25519" if key.algorithm.startswith("ed25519") else "rsa"
        value = f"v=DKIM1; k={kind}; p={key.public}"
        label = f"{key.selector}._domainkey"
        records.append(record(f"dkim{number}", "TXT", label, value, not key.pending))
    records.append(record("dmarc", "TXT", "_dmarc", "v=DMARC1; p=none;", True))
    if settings.return_path_host:
        label, host = settings.return_path_label, settings.return_path_host
        records.append(record("return_path", "CNAME", label, host, False))
    if settings.tracking_host:
        host = settings.tracking_host
        records.append(record("link_verification", "CNAME", "mt-link", host, False))
    return records


def judge(expected: ExpectedRecord, found: Sequence[str]) -> Verdict:
    """Compare what DNS holds at `expected.domain` (TXT strings or CNAME targets) with it."""
    answers = [normalise(value) for value in found]
    if expected.type == "CNAME":
        return _judge_cname(expected, answers)
    if expected.key == "verification":
        wanted = normalise(expected.value)
        hits = [a for a in answers if a.lower().startswith(VERIFICATION_PREFIX)]
        if not hits:
            return Verdict("missing")
        if any(a.lower() == wanted.lower() for a in hits):
            return Verdict("pass")
        return Verdict("fail", "the verification token is not this domain's")
    if expected.key == "spf":
        return _judge_spf(expected, answers)
    if expected.key == "dmarc":
        policies = [a for a in answers if a.upper().startswith("V=DMARC1")]
        if not policies:
            return Verdict("missing")
        if len(policies) > 1:
            return Verdict("fail", "more than one DMARC record (receivers ignore them all)")
        return Verdict("pass")
    return _judge_dkim(expected, answers)


def normalise(value: str) -> str:
    """TXT/CNAME text as compared: quotes and split strings joined, whitespace collapsed,
    trailing dot dropped."""
    text = value.strip()
    if text.startswith('"'):
        text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text)) or text.strip('"')
    return re.sub(r"\s+", " ", text).strip().rstrip(".")


def _judge_cname(expected: ExpectedRecord, answers: list[str]) -> Verdict:
    if not answers:
        return Verdict("missing")
    if any(a.lower() == expected.value.lower().rstrip(".") for a in answers):
        return Verdict("pass")
    return Verdict("fail", f"points to {answers[0]}, not {expected.value}")


def _judge_spf(expected: ExpectedRecord, answers: list[str]) -> Verdict:
    policies = [a for a in answers if a.lower().split(" ")[0] == "v=spf1"]
    if not policies:
        return Verdict("missing")
    if len(policies) > 1:
        return Verdict("fail", "more than one SPF record (a permanent error for receivers)")
    mechanism = expected.value.split(" ")[1].lower()
    terms = {term.lstrip("+").lower() for term in policies[0].split(" ")[1:]}
    if mechanism in terms:
        return Verdict("pass")
    return Verdict("fail", f"the SPF record does not include {mechanism}")


def _judge_dkim(expected: ExpectedRecord, answers: list[str]) -> Verdict:
    keys = [tags for tags in map(_tags, answers) if "p" in tags]
    if not keys:
        return Verdict("missing")
    wanted = _tags(expected.value)
    for tags in keys:
        if tags["p"] == wanted["p"] and tags.get("k", "rsa") == wanted["k"]:
            return Verdict("pass")
    return Verdict("fail", "a different public key is published at this selector")


def publishes_key(found: Sequence[str], public: str) -> bool:
    """Whether TXT answers `found` hold the DKIM public key `public`."""
    return any(_tags(normalise(value)).get("p") == public for value in found)


def _tags(value: str) -> dict[str, str]:
    """`v=DKIM1; k=rsa; p=...` -> tags, whitespace inside values removed (RFC 6376 §3.2)."""
    tags = {}
    for part in value.split(";"):
        name, sep, tag_value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = re.sub(r"\s+", "", tag_value)
    return tags


def setup_instructions(domain: str, records: Sequence[ExpectedRecord]) -> str:
    """A plain-text message telling whoever runs the domain's DNS what to publish."""
    lines = [
        f"To send mail from {domain}, publish these DNS records at its DNS provider.",
        "",
    ]
    for record in records:
        need = "required" if record.required else "optional"
        lines += [
            f"{record.key} ({need})",
            f"  type:  {record.type}",
            f"  name:  {record.domain}",
            f"         (some providers want it without the domain: {record.name or '@'})",
            f"  value: {record.value}",
            "",
        ]
    lines += [
        "Quote TXT values if your provider asks for it; a trailing dot on names is fine.",
        "The records are checked every hour: the domain sends once every required one passes.",
    ]
    return "\n".join(lines) + "\n"
