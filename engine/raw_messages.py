"""Raw messages (`.eml`) behind signed, expiring links, as the email-log detail offers them.

The link carries the account and the message, signed with a key derived from the
installation's secret and stamped with the time (itsdangerous): whoever holds it can fetch
that one message until it expires, without an API token, as with a presigned storage URL.
"""

from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from adapters.secrets import SecretBox
from domain.mime import message_bytes
from engine.store import EventStore
from projections.email_logs import message_source

RAW_PATH = "/api/email_logs/raw"
LINK_SECONDS = 3600


class LinkExpired(Exception):
    """A genuine link, past its time."""


@dataclass(frozen=True)
class RawMessage:
    message_id: str
    data: bytes


class RawMessageLinks:
    """Make and read the signed links to raw messages."""

    def __init__(self, box: SecretBox, max_age: int = LINK_SECONDS) -> None:
        self.max_age = max_age
        self._serializer = URLSafeTimedSerializer(box.derive("raw message links"), salt="raw")

    def url(self, base_url: str, account_id: int, message_id: str) -> str:
        token = self._serializer.dumps([account_id, message_id])
        return f"{base_url.rstrip('/')}{RAW_PATH}/{token}"

    def read(self, token: str) -> tuple[int, str] | None:
        """(account id, message id) of a link made here; None if it was not; LinkExpired."""
        try:
            account_id, message_id = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired:
            raise LinkExpired from None
        except (BadSignature, ValueError, TypeError):
            return None
        return int(account_id), str(message_id)


def raw_message(store: EventStore, account_id: int, message_id: str) -> RawMessage | None:
    """The message's bytes as they were sent (before DKIM signing); None if not there."""
    source = message_source(store.db, account_id, message_id)
    if source is None:
        return None
    format, head, body = source
    blobs = store.get_blobs([head, body])
    if head not in blobs or body not in blobs:
        return None
    return RawMessage(message_id, message_bytes(format, blobs[head], blobs[body]))
