"""The email-log read model: built from the log, exactly once, rebuildable."""

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from domain.message import Message, follow_up
from domain.submission import BatchDraft, Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin, open_account
from engine.domains import add_domain
from engine.runtime import Runtime
from engine.status import status
from projections.email_logs import EmailLogs, get_message
from projections.runner import Projector
from projections.sending_domains import SendingDomains, find_domain
from tests.support.live import LiveServer

ORIGIN = Origin(Principal(1, 1, "t", account_admin(1)), "transactional", "api", "192.0.2.7")


def send(runtime: Runtime, **fields: object) -> list[str]:
    request = {
        "from": {"email": "a@example.com"},
        "to": [{"email": "b@example.com"}],
        "subject": "Hi",
        "text": "x",
    }
    request.update(fields)
    return asyncio.run(runtime.acceptor.send(ORIGIN, msgspec.convert(request, Draft)))


def rows(runtime: Runtime) -> list[tuple]:
    with runtime.store.db.transaction(commit=False) as cursor:
        cursor.execute(
            runtime.store.db.prepare(
                "SELECT message_id, status, recipient FROM {email_logs} ORDER BY message_id"
            )
        )
        return [tuple(r.values()) if isinstance(r, dict) else tuple(r) for r in cursor.fetchall()]


def test_accepted_messages_appear_with_their_history(runtime: Runtime) -> None:
    ids = send(
        runtime,
        category="welcome",
        custom_variables={"user_id": "42"},
        cc=[{"email": "c@example.com"}],
    )
    assert runtime.email_logs.catch_up() >= 2
    log = get_message(runtime.store.db, 1, ids[1])
    assert log is not None
    assert (log["status"], log["to"], log["from"], log["subject"]) == (
        "enqueued",
        "c@example.com",
        "a@example.com",
        "Hi",
    )
    assert (log["category"], log["custom_variables"]) == ("welcome", {"user_id": "42"})
    assert (log["client_ip"], log["sending_stream"]) == ("192.0.2.7", "transactional")
    assert [e["event_type"] for e in log["events"]] == ["sending"]
    assert log["events"][0]["details"] == {"source": "api", "client_ip": "192.0.2.7"}
    assert get_message(runtime.store.db, 2, ids[1]) is None  # another account sees nothing


def test_projection_is_exactly_once_and_rebuildable(runtime: Runtime) -> None:
    send(runtime)
    batch = msgspec.convert(
        {
            "base": {"from": {"email": "a@example.com"}, "subject": "S", "text": "t"},
            "requests": [{"to": [{"email": f"u{i}@example.com"}]} for i in range(30)],
        },
        BatchDraft,
    )
    asyncio.run(runtime.acceptor.batch(ORIGIN, batch))
    runtime.email_logs.catch_up()
    before = rows(runtime)
    assert len(before) == 31
    assert runtime.email_logs.run_once() == 0  # nothing new, nothing applied twice
    runtime.email_logs.rebuild()
    assert rows(runtime) == before


def test_two_projectors_on_one_database_do_not_apply_twice(runtime: Runtime) -> None:
    other = Projector(runtime.store.app, runtime.store.db, EmailLogs(), batch_size=3)
    runtime.email_logs.batch_size = 2
    for _ in range(4):
        send(runtime)
    while runtime.email_logs.run_once() + other.run_once():
        pass
    assert len(rows(runtime)) == 4
    assert runtime.email_logs.position() == runtime.store.head()


def test_delivery_outcomes_set_the_status_and_extend_the_history(runtime: Runtime) -> None:
    delivered, bounced, retried = send(
        runtime, cc=[{"email": "c@example.com"}], bcc=[{"email": "d@example.com"}]
    )
    now = datetime.now(UTC)
    where = {"mx": "mx.example.net", "sending_ip": "192.0.2.1", "mailbox_provider": "Other"}
    failure = {"code": 451, "enhanced_code": "4.7.1", "response": "4.7.1 Greylisted"}
    events = [
        follow_up(Message.Queued, uuid.UUID(i), 2, now) for i in (delivered, bounced, retried)
    ]
    events += [
        follow_up(
            Message.SoftBounced,
            uuid.UUID(delivered),
            3,
            now,
            attempt=1,
            **where,
            **failure,
            bounce_category="greylisting",
            next_attempt_at=now,
        ),
        follow_up(
            Message.Delivered,
            uuid.UUID(delivered),
            4,
            now,
            attempt=2,
            **where,
            code=250,
            response="2.0.0 Ok: queued",
        ),
        follow_up(
            Message.Bounced,
            uuid.UUID(bounced),
            3,
            now,
            attempt=1,
            **where,
            code=550,
            enhanced_code="5.1.1",
            response="5.1.1 User unknown",
            bounce_category="badrecipient",
        ),
        follow_up(
            Message.SoftBounced,
            uuid.UUID(retried),
            3,
            now,
            attempt=1,
            **where,
            **failure,
            bounce_category="greylisting",
            next_attempt_at=now,
        ),
    ]
    runtime.committer.submit(events).result(10)
    runtime.email_logs.catch_up()

    def log(message_id: str) -> dict:
        found = get_message(runtime.store.db, 1, message_id)
        assert found is not None
        return found

    first = log(delivered)
    assert first["status"] == "delivered"
    assert [e["event_type"] for e in first["events"]] == ["sending", "soft_bounce", "delivery"]
    assert first["events"][1]["details"] == {
        "sending_ip": "192.0.2.1",
        "recipient_mx": "mx.example.net",
        "email_service_provider": "Other",
        "email_service_provider_status": "4.7.1",
        "email_service_provider_response": "4.7.1 Greylisted",
        "bounce_category": "greylisting",
    }
    assert first["events"][2]["details"] == {
        "sending_ip": "192.0.2.1",
        "recipient_mx": "mx.example.net",
        "email_service_provider": "Other",
    }
    second = log(bounced)
    assert second["status"] == "not_delivered"
    assert second["events"][-1]["details"]["bounce_category"] == "badrecipient"
    assert log(retried)["status"] == "enqueued"


def test_a_read_model_skips_what_it_does_not_follow_and_writes_it_down_when_the_log_rests(
    runtime: Runtime,
) -> None:
    domains = Projector(runtime.store.app, runtime.store.db, SendingDomains())
    domains.idle_write = 60.0  # (so that a slow machine cannot make it write in between)
    send(runtime)
    domains.run_once()  # nothing written down for a while: this one writes
    assert domains.position() == runtime.store.head()
    written = domains.position()
    send(runtime)  # only events it does not follow
    assert domains.run_once() > 0  # read past them ...
    assert domains.position() == written  # ... and not written down yet, the log may go on
    assert domains.run_once() == 0  # the log rests: now it is
    assert domains.position() == runtime.store.head()
    account = open_account(runtime.store, "acme")
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account, "example.org"
    )
    send(runtime)
    domains.catch_up()  # what it follows is applied at once, whatever came around it
    assert find_domain(runtime.store.db, account, domain_id) is not None
    assert domains.position() == runtime.store.head()


def test_status_says_how_far_behind_each_read_model_is(runtime: Runtime) -> None:
    runtime.email_logs.catch_up()
    send(runtime)
    head = runtime.store.head()
    before = {f.name: f for f in status(runtime).followers}
    assert before["email_logs"].lag == head - before["email_logs"].position > 0
    assert before["email_logs"].kind == "read_model"
    assert before["dispatch"].kind == "process"
    runtime.email_logs.catch_up()
    after = status(runtime)
    assert {f.name: f.lag for f in after.followers}["email_logs"] == 0
    assert after.head == head


def test_metrics_in_prometheus_text(runtime: Runtime) -> None:
    send(runtime)
    head = runtime.store.head()
    live = LiveServer(runtime)
    try:
        answer = live.client.get("/metrics")
    finally:
        live.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    assert families["postline_log_head"].samples[0].value >= head  # (dispatch may add events)
    lags = {s.labels["name"]: s.value for s in families["postline_follower_lag_events"].samples}
    assert {"email_logs", "delivery_queue", "api_tokens", "dispatch"} <= lags.keys()
    assert all(value >= 0 for value in lags.values())
    assert "postline_delivery_queue_messages" in families


def test_one_process_runs_each_read_model_and_another_takes_over(
    runtime: Runtime, tmp_path: Path
) -> None:
    other = Runtime(runtime.store.url, data_dir=tmp_path, sender_policy="any")
    other.start()
    names = {p.projection.name for p in [*runtime.projectors, *runtime.processes]}
    postgres = runtime.store.url.dialect == "postgres"

    async def scenario() -> None:
        await runtime.start_background()
        await asyncio.sleep(0.5)
        await other.start_background()
        await asyncio.sleep(0.5)
        if postgres:  # the first holds every runner lock; the second stands by
            assert runtime.runner_locks.held == names
            assert other.runner_locks.held == frozenset()
        else:  # one host: every process runs its read models
            assert other.runner_locks.hold("email_logs")
        await runtime.stop_background()  # its locks go with it
        request = {"from": {"email": "a@x.org"}, "to": [{"email": "b@x.org"}], "subject": "s"}
        await other.acceptor.send(ORIGIN, msgspec.convert({**request, "text": "x"}, Draft))
        head = await other.run(other.store.head)
        for _ in range(100):
            if await other.run(other.email_logs.position) >= head:
                break
            await asyncio.sleep(0.1)
        assert await other.run(other.email_logs.position) >= head
        if postgres:
            assert "email_logs" in other.runner_locks.held
        await other.stop_background()

    try:
        asyncio.run(scenario())
    finally:
        other.close()
