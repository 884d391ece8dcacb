"""The replay benchmark's tools: a large history written fast, and the log read raw.

The history is what the delivery path writes, without running it: per message an `Accepted`,
a `Queued`, then mostly a `Delivered`, some a `SoftBounced` first, some a `Bounced`, built as
the engine builds them (`domain.message.accepted` / `follow_up`) and recorded through the
application's recorder in large batches (one body blob shared by all of them).
"""

import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.database import parse_url
from domain.message import FORMAT_COMPOSITION, Message, accepted, follow_up
from engine.runtime import Runtime
from engine.store import EventStore
from projections.replay import rebuild

BATCH = 20_000  # events per recorded transaction while generating
READ_BATCH = 5_000  # notifications per select while reading the log raw
WHERE = {"mx": "mx.example.net", "sending_ip": "192.0.2.1", "mailbox_provider": "Other"}


def _message(n: int, at: datetime, body: str) -> list[Any]:
    """The events of message `n`: 3 or 4 of them (the mix of a healthy delivery path)."""
    message_id = uuid.uuid4()
    events = [
        accepted(
            message_id,
            at,
            account_id=1 + n % 3,
            token_id=1,
            stream="transactional" if n % 4 else "bulk",
            source="api",
            client_ip="192.0.2.7",
            sender="hello@example.com",
            recipient=f"user{n}@example.net",
            recipient_kind="to",
            subject="Your order has shipped",
            category="shipping",
            custom_variables={"order_id": str(n)},
            format=FORMAT_COMPOSITION,
            head=hashlib.sha256(str(n).encode()).hexdigest(),
            body=body,
            size=1200,
        ),
        follow_up(Message.Queued, message_id, 2, at),
    ]
    version, attempt = 3, 1
    if n % 10 in (1, 2):  # greylisted once, delivered on the next attempt
        events.append(
            follow_up(
                Message.SoftBounced,
                message_id,
                version,
                at,
                attempt=attempt,
                **WHERE,
                code=451,
                enhanced_code="4.7.1",
                response="4.7.1 Greylisted",
                bounce_category="greylisting",
                next_attempt_at=at + timedelta(minutes=5),
            )
        )
        version, attempt = version + 1, attempt + 1
    if n % 10 == 3:
        events.append(
            follow_up(
                Message.Bounced,
                message_id,
                version,
                at,
                attempt=attempt,
                **WHERE,
                code=550,
                enhanced_code="5.1.1",
                response="5.1.1 User unknown",
                bounce_category="badrecipient",
            )
        )
    else:
        events.append(
            follow_up(
                Message.Delivered,
                message_id,
                version,
                at,
                attempt=attempt,
                **WHERE,
                code=250,
                response="2.0.0 Ok: queued",
            )
        )
    return events


def generate(store: EventStore, events: int) -> tuple[int, int]:
    """Record about `events` events (whole messages): (events, messages) recorded."""
    body_data = b'{"text": "Hello! Your order is on its way."}'
    body = hashlib.sha256(body_data).hexdigest()
    start = datetime.now(UTC) - timedelta(days=1)
    written, n = 0, 0
    while written < events:
        batch: list[Any] = []
        while len(batch) < BATCH and written + len(batch) < events:
            batch += _message(n, start + timedelta(milliseconds=n), body)
            n += 1
        store.app.events.put(batch, blobs=[(body, body_data)])
        written += len(batch)
    return written, n


def read_raw(store: EventStore) -> tuple[int, float]:
    """Read every notification in batches, nothing done with them: (count, seconds)."""
    recorder = store.recorder
    began = time.perf_counter()
    count, position = 0, 0
    head = recorder.max_notification_id() or 0
    while position < head:
        batch = recorder.select_notifications(
            start=position, limit=READ_BATCH, stop=head, inclusive_of_start=False
        )
        if not batch:
            break
        count += len(batch)
        position = batch[-1].id
    return count, time.perf_counter() - began


GOAL = "≥ 20,000 events/s, ≥ 25% of the raw read rate"


def run(url: str, events: int) -> dict:
    """The replay scenario on an empty store at `url` (a PostgreSQL schema)."""
    runtime = Runtime(parse_url(url), sender_policy="any")
    try:
        began = time.perf_counter()
        recorded, messages = generate(runtime.store, events)
        generated = time.perf_counter() - began
        read_before, read_before_s = read_raw(runtime.store)
        began = time.perf_counter()
        applied = rebuild(runtime.projectors)
        seconds = time.perf_counter() - began
        read_after, read_after_s = read_raw(runtime.store)
        complete = _complete(runtime, messages, applied["email_logs"])
    finally:
        runtime.close()
    # The faster of the two raw reads (one before, one after the rebuild): the stricter peer.
    raw = max(read_before / read_before_s, read_after / read_after_s)
    rate = recorded / seconds
    return {
        "scenario": "replay",
        "store": "postgres",
        "setup": "postgres",
        "events": recorded,
        "messages": messages,
        "generate_s": round(generated, 1),
        "rebuild_s": round(seconds, 2),
        "events_per_s": round(rate),
        "raw_read_per_s": round(raw),
        "raw_read_samples_per_s": [
            round(read_before / read_before_s),
            round(read_after / read_after_s),
        ],
        "ratio_to_raw_read": round(rate / raw, 3),
        "events_applied": applied,
        "durable": complete,
        "goal": GOAL,
    }


def _complete(runtime: Runtime, messages: int, logged: int) -> bool:
    """Whether the rebuilt read models hold what the history says: a log row per message, a
    history row per event the email logs follow, nothing left to deliver."""
    db = runtime.store.db
    counts = {}
    with db.transaction(commit=False) as cursor:
        for table in ("email_logs", "email_log_events", "delivery_queue"):
            cursor.execute(db.prepare(f"SELECT count(*) AS n FROM {{{table}}}"))
            counts[table] = int(cursor.fetchone()["n"])
    return counts == {"email_logs": messages, "email_log_events": logged, "delivery_queue": 0}


def summary(r: dict) -> str:
    return (
        f"replay     {r['events']:,} events: rebuilt every read model in {r['rebuild_s']} s = "
        f"{r['events_per_s']:,} events/s | raw read {r['raw_read_per_s']:,} events/s | "
        f"ratio {r['ratio_to_raw_read']} | complete {r['durable']} | goal met: {r['goal_met']}"
    )
