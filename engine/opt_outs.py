"""Opting out: one-click unsubscribe links (RFC 8058) and spam complaints (RFC 5965).

Bulk mail carries `List-Unsubscribe: <https://.../unsubscribe/<token>>` with
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`; the token is the message id signed with a
key derived from the installation's secret (itsdangerous), so nobody can unsubscribe a message
they did not receive. An unsubscribe or a complaint is an event on the message; `AutoSuppress`
turns it into a suppression of the recipient for the sender's domain and the message's stream.
"""

import uuid

from itsdangerous import BadSignature, URLSafeSerializer

from adapters.secrets import SecretBox
from domain.feedback_reports import Complaint
from domain.message import Message
from engine.store import EventStore

UNSUBSCRIBE_PATH = "/unsubscribe"


class UnsubscribeLinks:
    """Make and read the signed unsubscribe URLs of messages."""

    def __init__(self, box: SecretBox, base_url: str | None) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self._serializer = URLSafeSerializer(box.derive("unsubscribe links"), salt="unsubscribe")

    def url(self, message_id: str) -> str | None:
        """The message's unsubscribe URL; None without a public URL to point at."""
        if self.base_url is None:
            return None
        token = self._serializer.dumps(uuid.UUID(message_id).hex)
        return f"{self.base_url}{UNSUBSCRIBE_PATH}/{token}"

    def message_of(self, token: str) -> uuid.UUID | None:
        """The message a token was made for; None if it was not made here."""
        try:
            return uuid.UUID(str(self._serializer.loads(token)))
        except (BadSignature, ValueError):
            return None


def unsubscribe(
    store: EventStore, message_id: uuid.UUID, ip: str | None, user_agent: str | None
) -> Message | None:
    """Record that the recipient unsubscribed (once); None when there is no such message."""
    message = store.get(message_id)
    if not isinstance(message, Message):
        return None
    if message.unsubscribe(ip, user_agent):
        store.save(message)
    return message


class UnknownMessage(LookupError):
    """A complaint about a message this installation did not send (to that recipient)."""


def complain(store: EventStore, complaint: Complaint) -> Message:
    """Record a spam complaint on the message it is about (once)."""
    message = store.get(complaint.message_id)
    if not isinstance(message, Message):
        raise UnknownMessage(f"no message {complaint.message_id}")
    if complaint.recipient and complaint.recipient.lower() != message.recipient.lower():
        raise UnknownMessage(
            f"message {complaint.message_id} went to {message.recipient}, not {complaint.recipient}"
        )
    if message.complain(complaint.feedback_type, complaint.reporter):
        store.save(message)
    return message
