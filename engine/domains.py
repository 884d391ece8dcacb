"""Sending-domain commands: add, change settings, delete, check DNS.

A new domain gets a verification token and two DKIM keys (selectors `pl1`, which signs, and
`pl2`, published ahead for rotation), their private halves sealed with the installation's
secret key. A name belongs to one live domain at a time (a `UniqueKey`, released on delete).
Checks look every expected record up (dnspython, uncached) and record the verdicts; the
aggregate decides whether that verifies the domain or loses its verification.
"""

import asyncio
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.dkim_signing import SigningKey, generate, load_key
from adapters.dns import LookupFailed, RecordLookup
from adapters.secrets import SecretBox
from adapters.sql import SqlDatabase
from domain.accounts import ApiToken, DomainTokens
from domain.activity import SYSTEM, Actor
from domain.addresses import ascii_domain
from domain.dns_records import (
    SELECTORS,
    DkimKey,
    DnsSettings,
    ExpectedRecord,
    expected_records,
    judge,
)
from domain.ids import entity_id, key_id, sequence_id
from domain.keys import UniqueKey
from domain.permissions import ACCESS_ADMIN, Access, Grant
from domain.sending_domains import DOMAIN_KEY_SPACE, SendingDomain, signing_key
from domain.sequences import Sequence
from engine.accounts import mint
from engine.errors import Conflict
from engine.store import EventStore
from projections.sending_domains import verified_domains
from projections.times import api_time

log = logging.getLogger("postline.domains")

ALLOCATION_ATTEMPTS = 20
# Mailbox providers' own domains: nobody proves ownership of these (spec §6.2).
PUBLIC_MAILBOX_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "hotmail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "gmx.com",
        "gmx.net",
        "mail.ru",
        "yandex.ru",
        "proton.me",
        "protonmail.com",
        "zoho.com",
    }
)


class DomainRefused(ValueError):
    """A domain that cannot be added (the message says why, for an HTTP 422)."""


class NoSuchDomain(LookupError):
    """No live domain with that id in that account."""


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """How this installation sets domains up."""

    dns: DnsSettings
    dkim_algorithm: str = "rsa"  # rsa (2048 bits) or ed25519
    # The installation's own address, which mails setup instructions (None: it does not).
    system_sender: str | None = None


def expected(domain: SendingDomain | dict[str, Any], config: DomainConfig) -> list[ExpectedRecord]:
    """The records a domain (aggregate or read-model row) must publish."""
    if isinstance(domain, SendingDomain):
        name, token, keys = domain.name, domain.verification_token, domain.dkim_keys
    else:
        name, token, keys = domain["name"], domain["verification_token"], domain["dkim_keys"]
    dkim = [
        DkimKey(k["selector"], k["algorithm"], k["public"], bool(k.get("pending"))) for k in keys
    ]
    return expected_records(name, token, dkim, config.dns)


def add_domain(
    store: EventStore,
    box: SecretBox,
    config: DomainConfig,
    account_id: int,
    name: str,
    created_by: str = "postline",
    actor: Actor = SYSTEM,
) -> int:
    """Add `name` to the account, with its own API token (`<name> token <id>`, admin of this
    domain only, never expiring: reset it to learn its secret); returns the domain's id."""
    domain_name = _checked_name(name)
    keys = [_new_key(box, selector, config.dkim_algorithm) for selector in SELECTORS]
    token = secrets.token_hex(16)
    for _ in range(ALLOCATION_ATTEMPTS):
        sequence = store.get(sequence_id("sending_domain")) or Sequence(
            id=sequence_id("sending_domain"), kind="sending_domain"
        )
        number = sequence.allocate()
        domain = SendingDomain(
            id=entity_id("sending_domain", number),
            domain_id=number,
            account_id=account_id,
            name=domain_name,
            verification_token=token,
            dkim_keys=keys,
            actor=actor,
        )
        claim = store.get(key_id(DOMAIN_KEY_SPACE, domain_name))
        if claim is None:
            claim = UniqueKey(
                id=key_id(DOMAIN_KEY_SPACE, domain_name),
                kind=DOMAIN_KEY_SPACE,
                key=domain_name,
                owner=domain.id,
            )
        elif claim.owner is None or _may_take_over(store, claim.owner, account_id):
            claim.reclaim(domain.id)
        else:
            raise DomainRefused(f"{domain_name} has already been added")
        own = mint(
            store,
            account_id,
            lambda token_id: f"{domain_name} token {token_id}",
            (Grant("domain", number, ACCESS_ADMIN),),
            created_by,
            None,
            actor,
        )
        tokens = DomainTokens(id=entity_id("domain_tokens", number), domain_id=number)
        tokens.join(own.token.token_id, None)
        try:
            store.save(sequence, domain, claim, *own.objects, tokens)
        except Conflict:
            continue  # another process took a number or the name: look again
        return number
    raise Conflict("could not allocate a sending domain id")


def _may_take_over(store: EventStore, owner_id: Any, account_id: int) -> bool:
    """Whether another account's claim of a name may pass to this one: only while it is
    unproven (not DNS-verified), so that adding a name nobody verifies blocks nobody."""
    owner = store.get(owner_id)
    if not isinstance(owner, SendingDomain) or owner.deleted:
        return True
    return owner.account_id != account_id and not owner.dns_verified


def get_domain(store: EventStore, account_id: int, domain_id: int) -> SendingDomain:
    """The live domain `domain_id` of the account, or NoSuchDomain."""
    domain = store.get(entity_id("sending_domain", domain_id))
    if not isinstance(domain, SendingDomain) or domain.account_id != account_id or domain.deleted:
        raise NoSuchDomain(domain_id)
    return domain


def change_settings(
    store: EventStore,
    account_id: int,
    domain_id: int,
    changes: dict[str, bool],
    actor: Actor = SYSTEM,
) -> None:
    domain = get_domain(store, account_id, domain_id)
    domain.change_settings(changes, actor)
    store.save(domain)


def rotate_dkim(
    store: EventStore,
    box: SecretBox,
    config: DomainConfig,
    account_id: int,
    domain_id: int,
    actor: Actor = SYSTEM,
) -> str:
    """Start a DKIM key rotation: a new key on the standby selector, signing once DNS has it
    (the old key signs until then); returns that selector."""
    domain = get_domain(store, account_id, domain_id)
    selector = domain.rotate_dkim(_new_key(box, "", config.dkim_algorithm), actor)
    store.save(domain)
    return selector


def delete_domain(
    store: EventStore, account_id: int, domain_id: int, by: str, actor: Actor = SYSTEM
) -> list[int]:
    """Delete the domain (its history stays), free its name and delete the tokens that grant
    nothing else; returns their ids."""
    domain = get_domain(store, account_id, domain_id)
    domain.delete(actor)
    changed: list[Any] = [domain]
    claim = store.get(key_id(DOMAIN_KEY_SPACE, domain.name))
    if claim is not None and claim.owner == domain.id:
        claim.release()
        changed.append(claim)
    revoked = []
    tokens = store.get(entity_id("domain_tokens", domain_id))
    for token_id in tokens.tokens if isinstance(tokens, DomainTokens) else ():
        token = store.get(entity_id("api_token", token_id))
        if not isinstance(token, ApiToken) or token.revoked:
            continue
        if all(g.resource_type == "domain" and g.resource_id == domain_id for g in token.grants):
            token.revoke(by=by, actor=actor)
            changed.append(token)
            revoked.append(token_id)
    store.save(*changed)
    return revoked


async def check_records(
    lookup: RecordLookup, records: list[ExpectedRecord]
) -> list[dict[str, Any]]:
    """Look every record up at once; each result is `key, status, found, problem`."""

    async def one(record: ExpectedRecord) -> dict[str, Any]:
        try:
            found = await lookup.values(record.domain, record.type)
        except LookupFailed as error:
            return {
                "key": record.key,
                "status": "network_error",
                "found": [],
                "problem": str(error),
            }
        verdict = judge(record, found)
        return {
            "key": record.key,
            "status": verdict.status,
            "found": found,
            "problem": verdict.problem,
        }

    return list(await asyncio.gather(*(one(record) for record in records)))


def record_check(
    store: EventStore,
    config: DomainConfig,
    account_id: int,
    domain_id: int,
    results: list[dict[str, Any]],
    at: datetime | None = None,
    checked_version: int | None = None,
) -> SendingDomain:
    """Record a check's results on the domain (verifying it, or losing verification).
    `checked_version`: the version whose records were looked up; Conflict if the domain
    changed since (a rotation, say), so that stale results never judge new records."""
    domain = get_domain(store, account_id, domain_id)
    if checked_version is not None and domain.version != checked_version:
        raise Conflict(f"sending domain {domain_id} changed while its records were checked")
    required = {r.key for r in expected(domain, config) if r.required}
    domain.record_check(results, required, at or datetime.now(UTC))
    store.save(domain)
    return domain


def _checked_name(name: str) -> str:
    cleaned = name.strip().lower().rstrip(".")
    domain = ascii_domain(cleaned)
    if domain is None:
        raise DomainRefused(f"{name!r} is not a valid domain name")
    if domain.startswith("www."):
        raise DomainRefused("add the domain without www.")
    if domain in PUBLIC_MAILBOX_DOMAINS:
        raise DomainRefused(f"{domain} is a public mailbox provider's domain")
    return domain


def _new_key(box: SecretBox, selector: str, algorithm: str) -> dict[str, str]:
    pem, record = generate(algorithm)
    public = record.rpartition("p=")[2]
    return {
        "selector": selector,
        "algorithm": f"{algorithm}-sha256",
        "public": public,
        "private": box.seal(pem),
    }


def row_of(domain: SendingDomain) -> dict[str, Any]:
    """An aggregate as a read-model row (when the read model has not caught up yet)."""
    return {
        "domain_id": domain.domain_id,
        "name": domain.name,
        "verification_token": domain.verification_token,
        "dkim_keys": domain.dkim_keys,
        "settings": domain.settings,
        "records": domain.records,
        "checked_at": domain.checked_at,
        "dns_verified": domain.dns_verified,
        "dns_verified_at": domain.dns_verified_at,
    }


def domain_view(
    row: dict[str, Any], config: DomainConfig, access: Access | None = None
) -> dict[str, Any]:
    """A read-model row in the API's shape (the SDK's `SendingDomain`).

    Each record shows what is expected (`value`), its status from the last check, and what
    was found with the reason it fails (`found`, `problem`): expected against found.
    """
    checked = {r["key"]: r for r in row["records"]}
    records = []
    for record in expected(row, config):
        result = checked.get(record.key, {})
        if result.get("status") in ("pass", "fail", "missing"):
            # judged again against what is expected now (a rotated key expects a new value)
            verdict = judge(record, result.get("found", []))
            result = {**result, "status": verdict.status, "problem": verdict.problem}
        records.append(
            {
                "key": record.key,
                "domain": record.domain,
                "type": record.type,
                "name": record.name,
                "value": record.value,
                "status": result.get("status", "unchecked"),
                "required": record.required,
                "found": result.get("found", []),
                "problem": result.get("problem"),
            }
        )
    verified_at = row.get("dns_verified_at")
    if row["dns_verified"]:
        compliance = "compliant"
    elif row.get("checked_at"):
        compliance = "unverified_dns"
    else:
        compliance = "initial"
    return {
        "id": row["domain_id"],
        "domain_name": row["name"],
        "demo": False,
        "compliance_status": compliance,
        "dns_verified": row["dns_verified"],
        "dns_verified_at": api_time(verified_at) if verified_at and row["dns_verified"] else None,
        "dns_checked_at": api_time(row["checked_at"]) if row.get("checked_at") else None,
        "dns_records": records,
        "dkim_signing_selector": signing_key(row["dkim_keys"])["selector"],
        **row["settings"],
        "alert_recipient_email": None,
        "permissions": {  # what the caller's token may do with it (all, without a caller)
            "can_read": access is None or access.reads_domain(row["domain_id"]),
            "can_update": access is None or access.administers_domain(row["domain_id"]),
            "can_destroy": access is None or access.administers_account(),
        },
    }


@dataclass(frozen=True, slots=True)
class VerifiedSenders:
    """What the MTA takes from the verified domains, read together."""

    keys: list[SigningKey]  # the DKIM key that signs for each
    tracked: dict[str, tuple[bool, bool]]  # name -> (open, click tracking), where either is on


def verified_senders(db: SqlDatabase, box: SecretBox) -> VerifiedSenders:
    """The verified domains' signing keys and tracking settings, in one read."""
    senders = VerifiedSenders([], {})
    for row in verified_domains(db):
        signing = signing_key(row["dkim_keys"])
        try:
            senders.keys.append(
                load_key(row["name"], signing["selector"], box.open(signing["private"]))
            )
        except ValueError as error:  # SecretError, InvalidKeys: this domain goes unsigned
            log.warning("DKIM key of %s cannot be used: %s", row["name"], error)
        opens = row["settings"].get("open_tracking_enabled", False)
        clicks = row["settings"].get("click_tracking_enabled", False)
        if opens or clicks:
            senders.tracked[row["name"]] = (opens, clicks)
    return senders


def domain_named(store: EventStore, account_id: int, name: str) -> SendingDomain:
    """The account's live domain called `name`, or NoSuchDomain."""
    domain_name = name.strip().lower().rstrip(".")
    claim = store.get(key_id(DOMAIN_KEY_SPACE, domain_name))
    owner = store.get(claim.owner) if claim is not None and claim.owner is not None else None
    if not isinstance(owner, SendingDomain) or owner.account_id != account_id or owner.deleted:
        raise NoSuchDomain(name)
    return owner
