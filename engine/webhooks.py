"""Managing webhooks: create (with a new signing secret), change, pause and resume, give a new
secret, delete. The secret is kept sealed with the installation's key (it signs every batch,
so it cannot be a digest) and shown once, when it is made."""

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.secrets import SecretBox
from adapters.webhook_http import DestinationRefused, check_url
from domain.activity import SYSTEM, Actor
from domain.ids import entity_id
from domain.webhooks import InvalidWebhook, Webhook, checked_changes, checked_settings
from engine.accounts import ALLOCATION_ATTEMPTS, allocate
from engine.domains import NoSuchDomain, get_domain
from engine.errors import Conflict
from engine.store import EventStore


class NoSuchWebhook(LookupError):
    """No live webhook of that id in the account."""


@dataclass(frozen=True, slots=True)
class CreatedWebhook:
    webhook_id: int
    settings: dict[str, Any]
    signing_secret: str  # shown once


def new_secret() -> str:
    """32 hex characters, as Mailtrap's."""
    return secrets.token_hex(16)


def create_webhook(
    store: EventStore,
    box: SecretBox,
    account_id: int,
    fields: Mapping[str, Any],
    allow_private: bool,
    actor: Actor = SYSTEM,
) -> CreatedWebhook:
    """A new webhook; InvalidWebhook for settings that cannot be."""
    settings = checked_settings(fields)
    _check_destination(settings["url"], allow_private)
    domain_id = settings["domain_id"]
    if domain_id is not None:
        try:
            get_domain(store, account_id, domain_id)
        except NoSuchDomain:
            raise InvalidWebhook(
                ["domain_id must be one of the account's sending domains"]
            ) from None
    secret = new_secret()
    for _ in range(ALLOCATION_ATTEMPTS):
        sequence, number = allocate(store, "webhook")
        webhook = Webhook(
            id=entity_id("webhook", number),
            webhook_id=number,
            account_id=account_id,
            settings=settings,
            sealed_secret=box.seal(secret.encode()),
            actor=actor,
        )
        try:
            store.save(sequence, webhook)
        except Conflict:
            continue
        return CreatedWebhook(number, settings, secret)
    raise Conflict("could not allocate a webhook id")


def get_webhook(store: EventStore, account_id: int, webhook_id: int) -> Webhook:
    webhook = store.get(entity_id("webhook", webhook_id))
    if not isinstance(webhook, Webhook) or webhook.account_id != account_id or webhook.deleted:
        raise NoSuchWebhook(webhook_id)
    return webhook


def change_webhook(
    store: EventStore,
    account_id: int,
    webhook_id: int,
    fields: Mapping[str, Any],
    allow_private: bool,
    actor: Actor = SYSTEM,
) -> Webhook:
    """Change url, active (pause, resume), payload_format or event_types."""
    webhook = get_webhook(store, account_id, webhook_id)
    changes = checked_changes(webhook.settings, fields)
    if "url" in changes:
        _check_destination(changes["url"], allow_private)
    if webhook.change(changes, actor):
        store.save(webhook)
    return webhook


def rotate_secret(
    store: EventStore, box: SecretBox, account_id: int, webhook_id: int, actor: Actor = SYSTEM
) -> str:
    """A new signing secret, in force at once; returned here only."""
    webhook = get_webhook(store, account_id, webhook_id)
    secret = new_secret()
    webhook.rotate_secret(box.seal(secret.encode()), actor)
    store.save(webhook)
    return secret


def delete_webhook(
    store: EventStore, account_id: int, webhook_id: int, actor: Actor = SYSTEM
) -> None:
    webhook = get_webhook(store, account_id, webhook_id)
    webhook.delete(actor)
    store.save(webhook)


def pause_webhook(store: EventStore, account_id: int, webhook_id: int, reason: str) -> None:
    """Stop a webhook whose receiver kept failing (an event: the audit log tells its owner)."""
    webhook = get_webhook(store, account_id, webhook_id)
    webhook.pause(reason)
    store.save(webhook)


def _check_destination(url: str, allow_private: bool) -> None:
    try:
        check_url(url, allow_private)
    except DestinationRefused as error:
        raise InvalidWebhook([str(error)]) from None
