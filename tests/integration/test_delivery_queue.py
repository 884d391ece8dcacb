"""Dispatch and the delivery queue: accepted -> queued -> claimed with a lease -> settled."""

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import msgspec

from domain.message import Message, follow_up
from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin
from engine.runtime import Runtime
from projections.delivery_queue import claim, pending, release, settle

ORIGIN = Origin(Principal(1, 1, "t", account_admin(1)), "transactional", "api", None)
LEASE = timedelta(minutes=10)


def send(runtime: Runtime, recipients: int) -> list[str]:
    draft = msgspec.convert(
        {
            "from": {"email": "shop@example.com"},
            "to": [{"email": f"user{i}@Example.NET"} for i in range(recipients)],
            "subject": "Hi",
            "text": "x",
        },
        Draft,
    )
    return asyncio.run(runtime.acceptor.send(ORIGIN, draft))


def follow(runtime: Runtime) -> None:
    runtime.dispatcher.catch_up()
    runtime.queue.catch_up()


def test_accepted_messages_are_dispatched_then_claimable(runtime: Runtime) -> None:
    ids = send(runtime, 3)
    runtime.queue.catch_up()
    now = datetime.now(UTC)
    assert pending(runtime.store.db) == 3
    assert claim(runtime.store.db, "w1", now, 10, LEASE) == []  # not queued yet
    follow(runtime)
    claimed = claim(runtime.store.db, "w1", now + timedelta(seconds=1), 10, LEASE)
    assert sorted(m.message_id for m in claimed) == sorted(ids)
    first = claimed[0]
    assert (first.version, first.attempts, first.domain, first.sender) == (
        2,
        0,
        "example.net",
        "shop@example.com",
    )
    # leased: nobody else gets them until the lease runs out
    assert claim(runtime.store.db, "w2", now + timedelta(seconds=2), 10, LEASE) == []
    again = claim(runtime.store.db, "w2", now + LEASE + timedelta(seconds=2), 10, LEASE)
    assert len(again) == 3


def test_dispatching_twice_records_each_message_once(runtime: Runtime) -> None:
    ids = send(runtime, 2)
    runtime.dispatcher.catch_up()
    head = runtime.store.head()
    runtime.dispatcher.rebuild()  # as if the position had been lost
    assert runtime.store.head() == head
    for message_id in ids:
        assert runtime.store.get(uuid.UUID(message_id)).version == 2


def test_outcomes_settle_the_queue_whoever_records_them_first(runtime: Runtime) -> None:
    ids = send(runtime, 3)
    follow(runtime)
    now = datetime.now(UTC) + timedelta(seconds=1)
    claimed = {m.message_id: m for m in claim(runtime.store.db, "w1", now, 10, LEASE)}
    delivered, retried, released = ids
    later = now + timedelta(minutes=5)
    where = {"mx": "mx.example.net", "sending_ip": None, "mailbox_provider": "Other"}
    runtime.committer.submit(
        [
            follow_up(
                Message.Delivered,
                uuid.UUID(delivered),
                3,
                now,
                attempt=1,
                **where,
                code=250,
                response="ok",
            ),
            follow_up(
                Message.SoftBounced,
                uuid.UUID(retried),
                3,
                now,
                attempt=1,
                **where,
                code=451,
                enhanced_code="4.7.1",
                response="later",
                bounce_category="greylisting",
                next_attempt_at=later,
            ),
        ]
    ).result(10)
    settle(runtime.store.db, [delivered], [(retried, later, 1, 3)])
    release(runtime.store.db, "w2", [released])  # not w2's lease: nothing happens
    release(runtime.store.db, "w1", [released])
    assert pending(runtime.store.db) == 2
    runtime.queue.catch_up()  # the projector agrees, and changes nothing more
    assert pending(runtime.store.db) == 2
    due_now = claim(runtime.store.db, "w2", now, 10, LEASE)
    assert [m.message_id for m in due_now] == [released]
    due_later = claim(runtime.store.db, "w2", later, 10, LEASE)
    assert [(m.message_id, m.attempts, m.version) for m in due_later] == [(retried, 1, 3)]
    assert claimed[retried].version == 2

    runtime.queue.rebuild()  # rebuilt from the log, w2's leases (not in the log) carried over
    assert claim(runtime.store.db, "w3", later, 10, LEASE) == []
    rebuilt = claim(runtime.store.db, "w3", later + LEASE + timedelta(seconds=1), 10, LEASE)
    assert sorted(m.message_id for m in rebuilt) == sorted([retried, released])


def test_concurrent_claims_never_share_a_message(runtime: Runtime) -> None:
    send(runtime, 200)
    follow(runtime)
    now = datetime.now(UTC) + timedelta(seconds=1)

    def worker(name: str) -> list[str]:
        taken = []
        while batch := claim(runtime.store.db, name, now, 7, LEASE):
            taken += [m.message_id for m in batch]
        return taken

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, ["a", "b", "c", "d"]))
    every = [m for taken in results for m in taken]
    assert len(every) == len(set(every)) == 200
