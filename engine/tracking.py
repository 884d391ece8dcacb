"""Open and click tracking: the events a pixel load or a tracked link's redirect records.

Every load and every click is an event on the message (forwarded copies count, spec §10);
"unique" opens and clicks are what the read models make of them.
"""

import uuid

from itsdangerous import BadSignature, URLSafeSerializer

from adapters.secrets import SecretBox
from domain.message import Message
from domain.tracking import add_pixel, track_links
from engine.message_changes import change_message
from engine.store import EventStore

OPEN_PATH = "/t/o"
CLICK_PATH = "/t/c"


class TrackingLinks:
    """The signed pixel and redirect URLs of one installation (`POSTLINE_PUBLIC_URL`): a
    link names the message (and the target), so nobody can make one for mail they did not
    get, nor turn the redirect into an open redirector."""

    def __init__(self, box: SecretBox, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._serializer = URLSafeSerializer(box.derive("tracking links"), salt="tracking")

    def open_url(self, message_id: str) -> str:
        return f"{self.base_url}{OPEN_PATH}/{self._serializer.dumps(uuid.UUID(message_id).hex)}"

    def click_url(self, message_id: str, target: str) -> str:
        token = self._serializer.dumps([uuid.UUID(message_id).hex, target])
        return f"{self.base_url}{CLICK_PATH}/{token}"

    def rewrite(self, message_id: str, opens: bool, clicks: bool, document: str) -> str:
        """A message's HTML with its links tracked (`clicks`) and a pixel (`opens`)."""
        if clicks:
            document = track_links(document, lambda target: self.click_url(message_id, target))
        if opens:
            document = add_pixel(document, self.open_url(message_id))
        return document

    def opened(self, token: str) -> uuid.UUID | None:
        """The message of a pixel URL's token; None if it was not made here."""
        try:
            return uuid.UUID(hex=str(self._serializer.loads(token)))
        except (BadSignature, ValueError):
            return None

    def clicked(self, token: str) -> tuple[uuid.UUID, str] | None:
        """The message and target of a redirect URL's token; None if not made here."""
        try:
            message, target = self._serializer.loads(token)
            return uuid.UUID(hex=str(message)), str(target)
        except (BadSignature, ValueError, TypeError):
            return None


def record_open(
    store: EventStore, message_id: uuid.UUID, ip: str | None, user_agent: str | None
) -> Message | None:
    """Record that the message was opened; None when there is no such message."""
    return change_message(store, message_id, lambda m: m.open(ip, user_agent))


def record_click(
    store: EventStore, message_id: uuid.UUID, url: str, ip: str | None, user_agent: str | None
) -> Message | None:
    """Record that a tracked link of the message was followed; None if no such message."""
    return change_message(store, message_id, lambda m: m.click(url, ip, user_agent))
