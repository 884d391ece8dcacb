import uuid
from datetime import UTC, datetime

from domain.message import Message, accepted

FIELDS = dict(
    account_id=1,
    token_id=2,
    stream="transactional",
    source="api",
    client_ip="10.0.0.1",
    sender="a@example.com",
    recipient="b@example.com",
    recipient_kind="to",
    subject="Hi",
    category="welcome",
    custom_variables={"k": "v"},
    format="composition",
    head="h" * 64,
    body="b" * 64,
    size=123,
)


def test_accepted_event_builds_the_same_aggregate_as_the_constructor() -> None:
    message_id = uuid.uuid4()
    now = datetime.now(UTC)
    event = accepted(message_id, now, **FIELDS)
    built = Message(id=message_id, **FIELDS)
    replayed = event.mutate(None)
    assert type(event) is type(built.collect_events()[0])
    assert (replayed.id, replayed.version, replayed.created_on) == (message_id, 1, now)
    assert vars(replayed).keys() == vars(built).keys()
    assert replayed.recipient == built.recipient == "b@example.com"
    assert replayed.status == "enqueued"
