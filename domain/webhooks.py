"""Webhooks: where an account wants its events posted, and what they look like (spec §1.10, §3.3).

A `Webhook` is an aggregate: created (with its signing secret, sealed), changed, paused after
its receiver failed for too long, given a new secret, deleted. The payload functions turn
message events into the webhook vocabulary (`delivery`, `soft bounce`, `spam`, ...); every
payload's `event_id` is derived from the event itself, so a retried or re-sent batch carries
the same ids and receivers can de-duplicate.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.activity import SYSTEM, Actor, changes_between
from domain.message import Message

WEBHOOK_TYPES = ("email_sending", "audit_log")
PAYLOAD_FORMATS = ("json", "jsonlines")
STREAMS = ("transactional", "bulk")
# The management API's names, and each one's `event` in payloads.
EVENT_TYPES: dict[str, str] = {
    "delivery": "delivery",
    "soft_bounce": "soft bounce",
    "bounce": "bounce",
    "suspension": "suspension",
    "unsubscribe": "unsubscribe",
    "open": "open",
    "spam_complaint": "spam",
    "click": "click",
    "reject": "reject",
}
UNAVAILABLE_TYPES = ("campaigns", "inbound_receiving")
MAX_URL_LENGTH = 2048
EVENT_ID_NAMESPACE = UUID("0b6f3c1e-8d4a-4f57-9a2e-5c1d7e9b3f60")


class InvalidWebhook(ValueError):
    """Webhook settings that cannot be; `problems` say why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Webhook(Aggregate):
    """One account's webhook."""

    @event("Created")
    def __init__(
        self,
        id: UUID,
        webhook_id: int,
        account_id: int,
        settings: dict[str, Any],  # url, webhook_type, active, payload_format, ... (VIEW_FIELDS)
        sealed_secret: str,
        actor: Actor | None = None,
    ) -> None:
        self.webhook_id = webhook_id
        self.account_id = account_id
        self.settings = settings
        self.sealed_secret = sealed_secret
        self.deleted = False

    @event("Changed")
    def _changed(
        self, settings: dict[str, Any], changes: dict[str, Any], actor: Actor | None = None
    ) -> None:
        self.settings = settings

    @event("Paused")
    def _paused(self, reason: str, actor: Actor | None = None) -> None:
        self.settings = {**self.settings, "active": False}

    @event("SecretRotated")
    def _rotated(self, sealed_secret: str, actor: Actor | None = None) -> None:
        self.sealed_secret = sealed_secret

    @event("Deleted")
    def _deleted(self, actor: Actor | None = None) -> None:
        self.deleted = True

    def change(self, changes: Mapping[str, Any], actor: Actor = SYSTEM) -> bool:
        """Apply already-checked changes (see `checked_changes`); False if nothing differs."""
        settings = {**self.settings, **changes}
        if settings == self.settings:
            return False
        self._changed(settings, changes_between(self.settings, settings), actor)
        return True

    def pause(self, reason: str) -> None:
        """Stop deliveries (its receiver kept failing); a PATCH with `active` resumes."""
        if self.settings["active"]:
            self._paused(reason, SYSTEM)

    def rotate_secret(self, sealed_secret: str, actor: Actor = SYSTEM) -> None:
        self._rotated(sealed_secret, actor)

    def delete(self, actor: Actor = SYSTEM) -> None:
        if not self.deleted:
            self._deleted(actor)


def checked_settings(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new webhook's settings from the API's `webhook` object; InvalidWebhook otherwise."""
    problems: list[str] = []
    kind = fields.get("webhook_type")
    if kind in UNAVAILABLE_TYPES:
        problems.append(f"webhook_type {kind} is not available")
    elif kind not in WEBHOOK_TYPES:
        problems.append(f"webhook_type must be one of {', '.join(WEBHOOK_TYPES)}")
    settings: dict[str, Any] = {
        "url": _url(fields.get("url"), problems),
        "webhook_type": kind,
        "active": _flag(fields, "active", True, problems),
        "payload_format": _format(fields.get("payload_format", "json"), problems),
        "sending_stream": None,
        "domain_id": None,
        "event_types": [],
    }
    if kind == "email_sending":
        stream = fields.get("sending_stream")
        if stream not in STREAMS:
            problems.append(f"sending_stream must be one of {', '.join(STREAMS)}")
        settings["sending_stream"] = stream
        settings["event_types"] = _event_types(fields.get("event_types"), problems)
        domain_id = fields.get("domain_id")
        if domain_id is not None and (
            not isinstance(domain_id, int) or isinstance(domain_id, bool)
        ):
            problems.append("domain_id must be a sending domain's id, or left out for all")
        settings["domain_id"] = domain_id
    if problems:
        raise InvalidWebhook(problems)
    return settings


def checked_changes(current: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The changes a PATCH asks for (url, active, payload_format, event_types)."""
    problems: list[str] = []
    changes: dict[str, Any] = {}
    unknown = sorted(set(fields) - {"url", "active", "payload_format", "event_types"})
    if unknown:
        problems.append(f"{', '.join(unknown)}: cannot be changed")
    if "url" in fields:
        changes["url"] = _url(fields["url"], problems)
    if "active" in fields:
        changes["active"] = _flag(fields, "active", True, problems)
    if "payload_format" in fields:
        changes["payload_format"] = _format(fields["payload_format"], problems)
    if "event_types" in fields:
        if current["webhook_type"] != "email_sending":
            problems.append("event_types: only email_sending webhooks have event types")
        changes["event_types"] = _event_types(fields["event_types"], problems)
    if problems:
        raise InvalidWebhook(problems)
    return changes


def _url(value: Any, problems: list[str]) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.append("url is required")
        return ""
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append("url must be an http:// or https:// URL with a host")
    elif len(url) > MAX_URL_LENGTH:
        problems.append(f"url must be at most {MAX_URL_LENGTH} characters")
    return url


def _flag(fields: Mapping[str, Any], name: str, default: bool, problems: list[str]) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        problems.append(f"{name} must be true or false")
        return default
    return value


def _format(value: Any, problems: list[str]) -> str:
    if value not in PAYLOAD_FORMATS:
        problems.append(f"payload_format must be one of {', '.join(PAYLOAD_FORMATS)}")
    return str(value)


def _event_types(value: Any, problems: list[str]) -> list[str]:
    if not isinstance(value, list) or not value:
        problems.append(f"event_types must list one or more of {', '.join(EVENT_TYPES)}")
        return []
    known = {v for v in value if isinstance(v, str) and v in EVENT_TYPES}
    wrong = [v for v in value if not isinstance(v, str) or v not in known]
    if wrong:
        problems.append(f"event_types: {wrong[0]!r} is not one of {', '.join(EVENT_TYPES)}")
    return sorted(known, key=list(EVENT_TYPES).index)


def view(webhook_id: int, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook in the API's shape (without its secret)."""
    return {
        "id": webhook_id,
        "url": settings["url"],
        "active": settings["active"],
        "webhook_type": settings["webhook_type"],
        "payload_format": settings["payload_format"],
        "sending_stream": settings["sending_stream"],
        "domain_id": settings["domain_id"],
        "event_types": list(settings["event_types"]),
    }


def event_id(message_or_resource: UUID, version: int) -> str:
    """The `event_id` of the event that made `version` of an aggregate: the same every time
    it is sent, different for every event."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{message_or_resource}:{version}"))


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What payloads tell of a message, from its `Accepted` event."""

    account_id: int
    stream: str
    recipient: str
    sender_domain: str
    category: str | None
    custom_variables: dict[str, Any]


def message_event_type(e: Any) -> str | None:
    """The management API's name for a message event (`soft_bounce`); None if not sent."""
    return _KINDS.get(type(e))


def message_payload(e: Any, facts: MessageFacts) -> dict[str, Any]:
    """The webhook payload of one message event (spec §3.3)."""
    kind = _KINDS[type(e)]
    payload: dict[str, Any] = {
        "event": EVENT_TYPES[kind],
        "message_id": str(e.originator_id),
        "sending_stream": facts.stream,
        "email": facts.recipient,
        "sending_domain_name": facts.sender_domain,
        "timestamp": int(e.timestamp.timestamp()),
        "event_id": event_id(e.originator_id, e.originator_version),
    }
    if facts.category:
        payload["category"] = facts.category
    if facts.custom_variables:
        payload["custom_variables"] = facts.custom_variables
    if kind in ("suspension", "reject"):
        payload["reason"] = e.reason
    elif kind in ("soft_bounce", "bounce"):
        payload["response"] = e.response
        if e.code is not None:
            payload["response_code"] = e.code
        payload["bounce_category"] = e.bounce_category
    elif kind in ("open", "click", "unsubscribe"):
        if e.ip:
            payload["ip"] = e.ip
        if e.user_agent:
            payload["user_agent"] = e.user_agent
        if kind == "click":
            payload["url"] = e.url
    return payload


_KINDS: dict[type, str] = {
    Message.Delivered: "delivery",
    Message.SoftBounced: "soft_bounce",
    Message.Bounced: "bounce",
    Message.Suspended: "suspension",
    Message.Rejected: "reject",
    Message.Unsubscribed: "unsubscribe",
    Message.Complained: "spam_complaint",
    Message.Opened: "open",
    Message.Clicked: "click",
}


def redacted_url(url: str) -> str:
    """`url` without what may be a secret (user:password, the query): for logs and the audit
    log, which many people read."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def redacted_changes(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Changes with their URLs redacted."""
    return {
        key: {side: redacted_url(v) if isinstance(v, str) else v for side, v in change.items()}
        if key == "url"
        else change
        for key, change in changes.items()
    }
