"""`postline replay`: read models rebuilt into fresh tables and swapped in, while serving.

The history is built through the engine (sends, dispatch, delivery outcomes, bounces and the
suppressions they cause, complaints, opens, clicks, domains, tokens, leases), the read models
follow it in small batches, and a replay must give back exactly the same rows.
"""

import asyncio
import hashlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from domain.feedback_reports import Complaint
from domain.message import Message, follow_up
from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin, issue_token
from engine.domains import add_domain, change_settings, delete_domain
from engine.opt_outs import complain, unsubscribe
from engine.runtime import Runtime
from engine.suppressions import suppress
from engine.tokens import delete_token
from engine.tracking import record_click, record_open
from projections.delivery_queue import claim
from projections.replay import FRESH, Rebuild, load, rebuild
from tests.support.live import LiveServer

WHERE = {"mx": "mx.example.net", "sending_ip": "192.0.2.1", "mailbox_provider": "Other"}
LEASE = timedelta(minutes=5)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def checksums(runtime: Runtime) -> dict[str, tuple[int, str]]:
    """Each read model's rows (all columns, in a fixed order): (row count, sha256)."""
    db = runtime.store.db
    sums = {}
    with db.transaction(commit=False) as cursor:
        for projector in runtime.projectors:
            digest, count = hashlib.sha256(), 0
            for table in projector.projection.tables:
                cursor.execute(db.prepare(f"SELECT * FROM {{{table}}}"))
                rows = sorted(repr(sorted(dict(row).items())) for row in cursor.fetchall())
                digest.update(f"{table} {len(rows)}\n".encode())
                digest.update("\n".join(rows).encode())
                count += len(rows)
            sums[projector.projection.name] = (count, digest.hexdigest())
    return sums


def leftovers(runtime: Runtime) -> list[str]:
    """Tables and indexes of a rebuild still under their fresh names."""
    db = runtime.store.db
    with db.transaction(commit=False) as cursor:
        if db.dialect == "postgres":
            cursor.execute(
                "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n"
                " ON n.oid = c.relnamespace WHERE n.nspname = %s",
                (db.schema,),
            )
        else:
            cursor.execute("SELECT name FROM sqlite_master")
        return [row["name"] for row in cursor.fetchall() if FRESH in row["name"]]


def catch_up(runtime: Runtime, batch_size: int = 3) -> None:
    """Every read model, in small batches (many batch boundaries), and the processes."""
    for projector in [*runtime.processes, *runtime.projectors]:
        projector.batch_size = batch_size
        projector.catch_up()


class History:
    """A bit of everything the read models follow, recorded through the engine."""

    def __init__(self, runtime: Runtime, account: tuple[int, str]) -> None:
        self.runtime = runtime
        self.account = account[0]
        self.caller = Principal(1, self.account, "t", account_admin(self.account))
        self.origin = Origin(self.caller, "transactional", "api", "192.0.2.7")
        store = runtime.store
        add = store, runtime.secrets, runtime.domain_config, self.account
        self.org = add_domain(*add, "example.org")
        gone = add_domain(*add, "example.net")
        change_settings(store, self.account, self.org, {"open_tracking_enabled": False})
        delete_domain(store, self.account, gone, by="tests")
        token = issue_token(store, self.account, "ci", created_by="tests")
        issue_token(store, self.account, "kept", created_by="tests")
        delete_token(store, self.caller, token.token_id, datetime.now(UTC))
        suppress(store, self.account, "blocked@example.com", None, "transactional", "manual import")

    def send(self, *recipients: str) -> list[str]:
        draft = {
            "from": {"email": "a@example.org"},
            "to": [{"email": r} for r in recipients],
            "subject": "Hi",
            "text": "x",
            "category": "welcome",
        }
        return asyncio.run(self.runtime.acceptor.send(self.origin, msgspec.convert(draft, Draft)))

    def outcomes(self, ids: list[str]) -> None:
        """Dispatch, then: delivered, greylisted then delivered, bounced, greylisted (still
        queued), and the rest left queued; the hard bounce suppresses its recipient."""
        self.runtime.dispatcher.catch_up()
        now = datetime.now(UTC)
        delivered, retried, bounced, waiting = (uuid.UUID(i) for i in ids[:4])
        self.delivered = delivered
        failure = {"code": 451, "enhanced_code": "4.7.1", "response": "4.7.1 Greylisted"}
        later = now + timedelta(minutes=5)
        soft = {**WHERE, **failure, "bounce_category": "greylisting", "next_attempt_at": later}
        ok = {**WHERE, "code": 250, "response": "2.0.0 Ok"}
        events = [
            follow_up(Message.Delivered, delivered, 3, now, attempt=1, **ok),
            follow_up(Message.SoftBounced, retried, 3, now, attempt=1, **soft),
            follow_up(Message.Delivered, retried, 4, now, attempt=2, **ok),
            follow_up(
                Message.Bounced,
                bounced,
                3,
                now,
                attempt=1,
                **WHERE,
                code=550,
                enhanced_code="5.1.1",
                response="5.1.1 User unknown",
                bounce_category="badrecipient",
            ),
            follow_up(Message.SoftBounced, waiting, 3, now, attempt=1, **soft),
        ]
        self.runtime.committer.submit(events).result(10)
        self.runtime.suppressor.catch_up()
        store = self.runtime.store
        record_open(store, delivered, "198.51.100.1", "Mail")
        record_open(store, delivered, "198.51.100.1", "Mail")
        record_click(store, delivered, "https://example.org/a", "198.51.100.1", "Mail")
        unsubscribe(store, retried, "198.51.100.2", "Mail")
        complain(
            store,
            Complaint(delivered, "abuse", None, "isp.test", "a@example.org", by_message_id=False),
        )
        self.runtime.suppressor.catch_up()


def build(runtime: Runtime, account: tuple[int, str]) -> History:
    history = History(runtime, account)
    catch_up(runtime)
    ids = history.send(*(f"r{n}@example.com" for n in range(6)), "blocked@example.com")
    catch_up(runtime)
    history.outcomes(ids)
    catch_up(runtime)
    return history


def test_a_replay_gives_back_the_same_rows(runtime: Runtime, account: tuple[int, str]) -> None:
    build(runtime, account)
    # Leases are not in the log: a replay keeps them (a worker is delivering these).
    leased = claim(runtime.store.db, "w1", datetime.now(UTC) + timedelta(seconds=1), 2, LEASE)
    assert len(leased) == 2
    before = checksums(runtime)
    counts = {name: count for name, (count, _) in before.items()}
    for name in ("email_logs", "delivery_queue", "sending_domains", "suppressions", "api_tokens"):
        assert counts[name] > 0, counts

    applied = rebuild(runtime.projectors, batch_size=4)

    assert checksums(runtime) == before
    assert applied["email_logs"] > 7  # rebuilt from the log, not copied
    assert leftovers(runtime) == []
    head = runtime.store.head()
    assert all(p.position() == head for p in runtime.projectors)
    assert runtime.email_logs.run_once() == 0  # nothing left to apply, nothing applied twice
    # Every table and index is back under its live name: a second replay finds no clash.
    rebuild(runtime.projectors)
    assert checksums(runtime) == before
    assert leftovers(runtime) == []


def test_the_swap_applies_what_came_after_the_load_and_moves_the_position_past_it(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    history = build(runtime, account)
    rebuilds = [Rebuild(projector) for projector in runtime.projectors]
    for rebuilding in rebuilds:
        rebuilding.create()
    load(rebuilds, runtime.store.head())
    for rebuilding in rebuilds:
        rebuilding.index()
    history.outcomes(history.send("late@example.com", *(f"l{n}@example.com" for n in range(3))))
    record_open(runtime.store, history.delivered, "198.51.100.3", "Mail")  # counted, once
    head = runtime.store.head()
    for rebuilding in rebuilds:  # (no projector runs meanwhile)
        assert rebuilding.position < head
        assert rebuilding.swap(runtime.store.app, batch_size=2) == head
    assert [p.position() for p in runtime.projectors] == [head] * len(rebuilds)
    swapped = checksums(runtime)
    rebuild(runtime.projectors)
    assert checksums(runtime) == swapped


def test_reads_see_the_live_tables_until_the_swap_and_the_projector_goes_on(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    _, token = account
    mail = {"from": {"email": "a@example.org"}, "subject": "Hi", "text": "x"}

    def send(to: str) -> str:
        reply = live.client.post(
            "/api/send", json={**mail, "to": [{"email": to}]}, headers=bearer(token)
        )
        assert reply.status_code == 200, reply.text
        return reply.json()["message_ids"][0]

    def shown(message_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            reply = live.client.get(f"/api/email_logs/{message_id}", headers={"Api-Token": token})
            if reply.status_code == 200 or time.monotonic() > deadline:
                assert reply.status_code == 200, reply.text
                return reply.json()
            time.sleep(0.05)

    first = [send(f"r{n}@example.com") for n in range(5)]
    shown(first[-1])
    db = runtime.store.db
    with db.transaction() as cursor:  # mark the live row: only the old table says this
        cursor.execute(
            db.prepare("UPDATE {email_logs} SET subject = ? WHERE message_id = ?"),
            ("as served before the swap", first[0]),
        )
    rebuilding = Rebuild(runtime.email_logs)
    rebuilding.create()
    during: list[str] = []

    def meanwhile(position: int) -> None:  # reads and writes while the fresh tables fill
        assert shown(first[0])["subject"] == "as served before the swap"
        during.append(send(f"during{len(during)}@example.com"))

    load([rebuilding], runtime.store.head(), meanwhile, batch_size=1)
    rebuilding.index()
    assert len(during) >= 5
    assert shown(first[0])["subject"] == "as served before the swap"
    rebuilding.swap(runtime.store.app, batch_size=2)

    assert shown(first[0])["subject"] == "Hi"  # the rebuilt row, from the log
    for message_id in during:  # events of the rebuild's time: there, once
        assert [e["event_type"] for e in shown(message_id)["events"]] == ["sending"]
    after = send("after@example.com")  # the live projector writes to the new tables
    assert [e["event_type"] for e in shown(after)["events"]] == ["sending"]
    assert leftovers(runtime) == []


def test_a_replay_under_load_applies_every_event_once(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    history = build(runtime, account)
    for projector in runtime.projectors:
        projector.batch_size = 2
    stop = threading.Event()
    failures: list[BaseException] = []

    def follow() -> None:  # the live projectors, as another process would run them
        while not stop.is_set():
            try:
                for projector in runtime.projectors:
                    projector.run_once()
            except BaseException as error:  # reported by the test
                failures.append(error)
                return
            time.sleep(0.001)

    sent: list[str] = []

    def meanwhile(position: int) -> None:
        sent.extend(history.send(f"load{len(sent)}@example.com"))
        record_open(runtime.store, history.delivered, "198.51.100.9", "Mail")  # counts: once
        runtime.dispatcher.catch_up()

    follower = threading.Thread(target=follow)
    follower.start()
    try:  # rebuild()'s steps, with events between them
        rebuilds = [Rebuild(projector) for projector in runtime.projectors]
        for rebuilding in rebuilds:
            rebuilding.create()
        load(rebuilds, runtime.store.head(), meanwhile, batch_size=3)
        for rebuilding in rebuilds:
            rebuilding.index()
            meanwhile(0)  # left for the swap to apply
        for rebuilding in rebuilds:
            rebuilding.swap(runtime.store.app, batch_size=2)
        history.outcomes(history.send(*(f"after{n}@example.com" for n in range(4))))
    finally:
        stop.set()
        follower.join()
    assert failures == []
    assert len(sent) >= 5
    for projector in runtime.projectors:
        projector.catch_up()
    served = checksums(runtime)
    rebuild(runtime.projectors)  # quietly, from the same log
    assert checksums(runtime) == served
