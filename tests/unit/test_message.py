import uuid
from datetime import UTC, datetime

import pytest

from domain.message import Message, accepted, follow_up

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


def test_follow_up_events_replay_like_the_aggregates_own_methods() -> None:
    message_id = uuid.uuid4()
    now = datetime.now(UTC)
    built = Message(id=message_id, **FIELDS)
    built.queue()
    outcome = dict(mx="mx.example.net", sending_ip="192.0.2.1", mailbox_provider="Other")
    built.soft_bounce(
        attempt=1,
        **outcome,
        code=451,
        enhanced_code="4.7.1",
        response="4.7.1 Greylisted",
        bounce_category="greylisting",
        next_attempt_at=now,
    )
    built.deliver(attempt=2, **outcome, code=250, response="2.0.0 Ok")
    recorded = built.collect_events()

    events = [accepted(message_id, now, **FIELDS)]
    events.append(follow_up(Message.Queued, message_id, 2, now))
    events.append(
        follow_up(
            Message.SoftBounced,
            message_id,
            3,
            now,
            attempt=1,
            **outcome,
            code=451,
            enhanced_code="4.7.1",
            response="4.7.1 Greylisted",
            bounce_category="greylisting",
            next_attempt_at=now,
        )
    )
    events.append(
        follow_up(
            Message.Delivered,
            message_id,
            4,
            now,
            attempt=2,
            **outcome,
            code=250,
            response="2.0.0 Ok",
        )
    )
    assert [type(e) for e in events] == [type(e) for e in recorded]
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert (replayed.version, replayed.status, replayed.attempts) == (4, "delivered", 2)
    with pytest.raises(TypeError, match=r"Message\.Delivered takes"):
        follow_up(Message.Delivered, message_id, 4, now, attempt=2)
