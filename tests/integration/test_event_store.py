"""The event store on both databases: events and blobs in one transaction, ordered log."""

import asyncio
import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from domain.message import accepted
from engine.errors import Conflict
from engine.runtime import Runtime


def message_event(message_id: uuid.UUID, body: str = "b" * 64):
    return accepted(
        message_id,
        datetime.now(UTC),
        account_id=1,
        token_id=1,
        stream="transactional",
        source="api",
        client_ip=None,
        sender="a@example.com",
        recipient="b@example.com",
        recipient_kind="to",
        subject="Hi",
        category=None,
        custom_variables={"n": 1},
        format="composition",
        head="h" * 64,
        body=body,
        size=10,
    )


def blob(data: bytes) -> tuple[str, bytes]:
    return hashlib.sha256(data).hexdigest(), data


def test_events_and_blobs_are_recorded_together_in_log_order(runtime: Runtime) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    payload = blob(b"x" * 100_000)
    runtime.committer.submit([message_event(i) for i in ids], [payload]).result(10)
    notifications = runtime.store.recorder.select_notifications(start=None, limit=100)
    assert [n.originator_id for n in notifications] == ids
    assert [n.id for n in notifications] == sorted(n.id for n in notifications)
    assert runtime.store.head() == notifications[-1].id
    assert runtime.store.get_blob(payload[0]) == payload[1]
    replayed = runtime.store.get(ids[2])
    assert (replayed.recipient, replayed.version) == ("b@example.com", 1)


def test_a_conflicting_write_records_nothing_not_even_its_blob(runtime: Runtime) -> None:
    message_id = uuid.uuid4()
    runtime.committer.submit([message_event(message_id)]).result(10)
    orphan = blob(b"never referenced")
    with pytest.raises(Conflict):
        runtime.committer.submit([message_event(message_id)], [orphan]).result(10)
    assert runtime.store.get_blob(orphan[0]) is None


def test_conflict_in_a_group_fails_only_the_conflicting_writer(runtime: Runtime) -> None:
    taken = uuid.uuid4()
    runtime.committer.submit([message_event(taken)]).result(10)
    runtime.committer.stop()  # queue several writes, then let one transaction take them all
    good = [uuid.uuid4() for _ in range(3)]
    futures = [runtime.committer.submit([message_event(i)]) for i in good[:2]]
    futures.append(runtime.committer.submit([message_event(taken)]))
    futures.append(runtime.committer.submit([message_event(good[2])]))
    runtime.committer.start()
    outcomes = [f.exception(10) for f in futures]
    assert [type(o).__name__ if o else None for o in outcomes] == [None, None, "Conflict", None]
    assert all(runtime.store.get(i) is not None for i in good)


def test_writes_committed_together_fail_alone(runtime: Runtime) -> None:
    taken = uuid.uuid4()
    runtime.committer.submit([message_event(taken)]).result(10)
    good = [uuid.uuid4() for _ in range(3)]
    writes = [
        [message_event(good[0])],
        [message_event(taken)],
        *([message_event(i)] for i in good[1:]),
    ]
    errors = asyncio.run(runtime.committer.commit_each(writes))
    assert [type(e).__name__ if e else None for e in errors] == [None, "Conflict", None, None]
    assert all(runtime.store.get(i) is not None for i in good)


def test_concurrent_writers_are_coalesced_into_few_transactions(runtime: Runtime) -> None:
    runtime.committer.stop()
    futures = [runtime.committer.submit([message_event(uuid.uuid4())]) for _ in range(200)]
    before = runtime.committer.batches
    runtime.committer.start()
    for future in futures:
        future.result(10)
    assert runtime.committer.batches - before == 1
    assert runtime.committer.events >= 200


def test_processes_starting_together_create_the_schema_once(database_url: str, tmp_path) -> None:
    from engine.settings import store_url

    url = store_url(database_url, tmp_path)
    runtimes: list[Runtime] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            runtimes.append(Runtime(url))
        except BaseException as error:
            errors.append(error)

    import threading

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rt in runtimes:
        rt.close()
    assert errors == []
    assert len(runtimes) == 4
