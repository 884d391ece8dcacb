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
from domain.addresses import comparable_domain, domain_of
from domain.feedback_reports import Complaint
from domain.message import Message
from engine.message_changes import change_message
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


class NotDeliveredYet(Exception):
    """The message is being delivered: its outcome is not recorded yet (retry shortly)."""


class UnknownMessage(LookupError):
    """A complaint about a message this installation did not send (to that recipient)."""


def unsubscribe(
    store: EventStore, message_id: uuid.UUID, ip: str | None, user_agent: str | None
) -> Message | None:
    """Record that the recipient unsubscribed (once); None when there is no such message."""

    def change(message: Message) -> bool:
        if message.status == "enqueued":
            raise NotDeliveredYet(str(message_id))
        return message.unsubscribe(ip, user_agent)

    return change_message(store, message_id, change)


def complain(store: EventStore, complaint: Complaint) -> Message:
    """Record a spam complaint on the message it is about (once). The report must be about
    mail from the message's sender's domain (ids in headers can be copied), and one found by
    the shared Message-ID must say which recipient complained."""

    def change(message: Message) -> bool:
        sender_domain = comparable_domain(domain_of(message.sender))
        if comparable_domain(domain_of(complaint.author)) != sender_domain:
            raise UnknownMessage(
                f"message {complaint.message_id} is from {sender_domain}, the reported one "
                f"from {complaint.author or 'nobody'}"
            )
        if complaint.by_message_id and not complaint.recipient:
            raise UnknownMessage(
                "the report names the message only by its Message-ID, which all its recipients "
                "share, and has no Original-Rcpt-To to say whose copy it was"
            )
        if complaint.recipient and complaint.recipient.lower() != message.recipient.lower():
            raise UnknownMessage(
                f"message {complaint.message_id} went to {message.recipient}, "
                f"not {complaint.recipient}"
            )
        return message.complain(complaint.feedback_type, complaint.reporter)

    message = change_message(store, complaint.message_id, change)
    if message is None:
        raise UnknownMessage(f"no message {complaint.message_id}")
    return message
