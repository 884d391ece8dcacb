"""Changing a message after it was sent (opens, clicks, unsubscribes, complaints).

Such changes race each other (two images of one mail load at once; an unsubscribe meets a
complaint): each is made on the message as loaded and saved at its version; on a conflict the
message is loaded again and the change made again.
"""

import uuid
from collections.abc import Callable

from domain.message import Message
from engine.errors import Conflict
from engine.store import EventStore

SAVE_ATTEMPTS = 5


def change_message(
    store: EventStore, message_id: uuid.UUID, change: Callable[[Message], bool]
) -> Message | None:
    """Apply `change` (False: nothing to record) and save; None when there is no such
    message. `change` may raise to refuse."""
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        message = store.get(message_id)
        if not isinstance(message, Message):
            return None
        if not change(message):
            return message
        try:
            store.save(message)
            return message
        except Conflict:  # changed by someone else meanwhile: load it again
            if attempt == SAVE_ATTEMPTS:
                raise
    raise AssertionError("unreachable")
