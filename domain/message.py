"""The `Message` aggregate: one per recipient, its id is the `message_id` clients get back."""

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic

STREAMS = ("transactional", "bulk")
SOURCES = ("api", "smtp")

# How the message's bytes are kept: "composition" = a `Head` and a `Body` (JSON) from which the
# MIME message is generated; "rfc5322" = header-prefix bytes and the raw message as received.
FORMAT_COMPOSITION = "composition"
FORMAT_RFC5322 = "rfc5322"


class Message(Aggregate):
    """One recipient's copy of a submitted email."""

    @event("Accepted")
    def __init__(
        self,
        id: UUID,
        *,
        account_id: int,
        token_id: int,
        stream: str,
        source: str,
        client_ip: str | None,
        sender: str,
        recipient: str,
        recipient_kind: str,
        subject: str | None,
        category: str | None,
        custom_variables: dict[str, Any],
        format: str,
        head: str,
        body: str,
        size: int,
    ) -> None:
        self.account_id = account_id
        self.stream = stream
        self.sender = sender
        self.recipient = recipient
        self.subject = subject
        self.category = category
        self.client_ip = client_ip
        self.head = head
        self.body = body
        self.format = format
        self.status = "enqueued"
        self.attempts = 0
        self.suspensions = 0
        self.opted_out: set[str] = set()  # "unsubscribe", "spam"
        self.opens = 0
        self.clicks = 0

    @event("Queued")
    def queue(self) -> None:
        """Dispatched for delivery: nothing stands in the way (suppressions, domain checks)."""

    @event("SoftBounced")
    def soft_bounce(
        self,
        *,
        attempt: int,
        mx: str | None,
        sending_ip: str | None,
        mailbox_provider: str | None,
        code: int | None,
        enhanced_code: str | None,
        response: str,
        bounce_category: str,
        next_attempt_at: datetime,
    ) -> None:
        """A temporary failure (4xx, timeout, no connection); tried again at `next_attempt_at`."""
        self.attempts = attempt
        self.suspensions = 0  # it was tried: a later suspension starts counting afresh

    @event("Delivered")
    def deliver(
        self,
        *,
        attempt: int,
        mx: str,
        sending_ip: str | None,
        mailbox_provider: str,
        code: int,
        response: str,
    ) -> None:
        """The recipient's MX host took the message."""
        self.attempts = attempt
        self.status = "delivered"

    @event("Bounced")
    def bounce(
        self,
        *,
        attempt: int,
        mx: str | None,
        sending_ip: str | None,
        mailbox_provider: str | None,
        code: int | None,
        enhanced_code: str | None,
        response: str,
        bounce_category: str,
    ) -> None:
        """A permanent failure (5xx, null MX, or retries exhausted): no more attempts."""
        self.attempts = attempt
        self.status = "not_delivered"

    @event("Suspended")
    def suspend(self, *, check: int, reason: str, next_check_at: datetime) -> None:
        """Held: its sending domain is not verified now; checked again at `next_check_at`."""
        self.suspensions = check

    @event("Rejected")
    def reject(self, *, reason: str) -> None:
        """Never sent: something stands in the way (a suppressed recipient)."""
        self.status = "not_delivered"

    @event("Unsubscribed")
    def _unsubscribed(self, *, ip: str | None, user_agent: str | None) -> None:
        self.status = "opted_out"
        self.opted_out.add("unsubscribe")

    @event("Complained")
    def _complained(self, *, feedback_type: str, reporter: str | None) -> None:
        self.status = "opted_out"
        self.opted_out.add("spam")

    @event("Opened")
    def _opened(self, *, ip: str | None, user_agent: str | None) -> None:
        self.opens += 1

    @event("Clicked")
    def _clicked(self, *, url: str, ip: str | None, user_agent: str | None) -> None:
        self.clicks += 1

    def open(self, ip: str | None, user_agent: str | None) -> bool:
        """The recipient's client loaded the tracking pixel (every load counts: forwarded
        copies too); False if the message was never delivered."""
        if self.status not in ("delivered", "opted_out"):
            return False
        self._opened(ip=ip, user_agent=user_agent)
        return True

    def click(self, url: str, ip: str | None, user_agent: str | None) -> bool:
        """The recipient followed a tracked link to `url`; False if never delivered."""
        if self.status not in ("delivered", "opted_out"):
            return False
        self._clicked(url=url, ip=ip, user_agent=user_agent)
        return True

    def unsubscribe(self, ip: str | None, user_agent: str | None) -> bool:
        """The recipient asked for no more of this mail; False if it already had, or never
        received it (only delivered mail is opted out of: mail still queued keeps its version
        for the workers that hold it)."""
        if "unsubscribe" in self.opted_out or self.status not in ("delivered", "opted_out"):
            return False
        self._unsubscribed(ip=ip, user_agent=user_agent)
        return True

    def complain(self, feedback_type: str, reporter: str | None) -> bool:
        """The recipient reported it as spam (a feedback-loop report); False if known, or if
        it was never delivered."""
        if "spam" in self.opted_out or self.status not in ("delivered", "opted_out"):
            return False
        self._complained(feedback_type=feedback_type, reporter=reporter)
        return True


# A message whose sending domain lost its verification while it waited is held and checked
# again this many times, this far apart, then rejected (spec §3.2).
SUSPENSION_CHECKS = 10
SUSPENSION_INTERVAL_SECONDS = 600
DOMAIN_NOT_VERIFIED = "Sending domain is not verified"

_MESSAGE_TOPIC = get_topic(Message)
_ACCEPTED = Message.Accepted  # type: ignore[attr-defined]
_ENVELOPE = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})
_ACCEPTED_FIELDS = frozenset(_ACCEPTED.__dataclass_fields__) - _ENVELOPE


def follow_up(kind: type[Any], id: UUID, version: int, timestamp: datetime, **fields: Any) -> Any:
    """A later event of a `Message` at `version` (Queued, Suspended, Rejected, SoftBounced,
    Delivered, Bounced),
    built without loading the aggregate: the dispatcher and the MTA workers know the version
    from the queue they work from, and record thousands of these a second."""
    expected = frozenset(kind.__dataclass_fields__) - _ENVELOPE
    if fields.keys() != expected:
        raise TypeError(f"{kind.__qualname__} takes {sorted(expected)}, got {sorted(fields)}")
    event_ = object.__new__(kind)
    fields["originator_id"] = id
    fields["originator_version"] = version
    fields["timestamp"] = timestamp
    object.__setattr__(event_, "__dict__", fields)
    return event_


def accepted(id: UUID, timestamp: datetime, **fields: Any) -> Message.Accepted:
    """The event that starts a `Message`, built without instantiating the aggregate.

    Accepting is the hot path (thousands of messages a second): the event's state is set in
    one step, as eventsourcing's mapper does when it reads events back, instead of through the
    frozen dataclass constructor (one `object.__setattr__` per field, 8x slower). The aggregate
    is rebuilt from this event whenever it is needed, exactly as if `Message(id=id, **fields)`
    had created it.
    """
    if fields.keys() != _ACCEPTED_FIELDS:
        raise TypeError(f"Message.Accepted takes {sorted(_ACCEPTED_FIELDS)}, got {sorted(fields)}")
    event = object.__new__(_ACCEPTED)
    fields["originator_id"] = id
    fields["originator_version"] = Message.INITIAL_VERSION
    fields["timestamp"] = timestamp
    fields["originator_topic"] = _MESSAGE_TOPIC
    object.__setattr__(event, "__dict__", fields)
    return event
