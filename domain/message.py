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
        self.head = head
        self.body = body
        self.format = format
        self.status = "enqueued"


_MESSAGE_TOPIC = get_topic(Message)
_ACCEPTED = Message.Accepted  # type: ignore[attr-defined]
_ACCEPTED_FIELDS = frozenset(_ACCEPTED.__dataclass_fields__) - {
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
}


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
