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


def accepted(id: UUID, timestamp: datetime, **fields: Any) -> Message.Accepted:
    """The event that starts a `Message`, built without instantiating the aggregate.

    Accepting is the hot path (thousands of messages a second); the aggregate is rebuilt from
    this event whenever it is needed, exactly as if `Message(id=id, **fields)` had created it.
    """
    return Message.Accepted(  # type: ignore[attr-defined]
        originator_id=id,
        originator_version=Message.INITIAL_VERSION,
        timestamp=timestamp,
        originator_topic=_MESSAGE_TOPIC,
        **fields,
    )
