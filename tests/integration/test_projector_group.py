"""Read models followed together (projections.runner.ProjectorGroup): one read of the log and
one transaction per batch, with each read model still on its own position."""

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from engine.runtime import Runtime
from projections.replay import rebuild
from projections.runner import Projector
from tests.integration.test_replay import History, checksums


def record(runtime: Runtime, account: tuple[int, str]) -> History:
    """The replay tests' history, with only the processes following it (they write events
    the read models follow); the read models are left behind, at position 0."""
    history = History(runtime, account)
    for process in runtime.processes:
        process.catch_up()
    history.outcomes(history.send(*(f"r{n}@example.com" for n in range(6)), "blocked@example.com"))
    for process in runtime.processes:
        process.catch_up()
    return history


@contextlib.contextmanager
def broken_stats(runtime: Runtime) -> Iterator[None]:
    """The stats read model fails on every batch until the block ends."""
    stats = runtime.stats.projection

    def broken(db: Any, cursor: Any, events: list[tuple[int, Any]]) -> None:
        raise RuntimeError("a bug in the stats")

    original = stats.apply
    stats.apply = broken  # type: ignore[method-assign]
    try:
        yield
    finally:
        stats.apply = original  # type: ignore[method-assign]


def assert_as_rebuilt(runtime: Runtime) -> None:
    """Every read model holds what a rebuild from the log gives: nothing missed, nothing
    applied twice."""
    followed = checksums(runtime)
    rebuild(runtime.projectors)
    assert checksums(runtime) == followed


def follow(runtime: Runtime, batch_size: int = 4) -> int:
    """Run the group until every read model is at the log's head; returns the batches."""
    group = runtime.read_models
    group.batch_size = batch_size
    batches = 0
    while any(p.position() < runtime.store.head() for p in runtime.projectors):
        group.run_once()
        batches += 1
        assert batches < 1000
    return batches


def test_the_group_builds_what_each_read_model_builds_alone(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    record(runtime, account)
    assert all(p.position() == 0 for p in runtime.projectors)
    assert follow(runtime) > 5  # many batch boundaries
    together = checksums(runtime)
    counts = {name: count for name, (count, _) in together.items()}
    assert min(counts["email_logs"] - 6, counts["stats"], counts["suppressions"]) > 0

    rebuild(runtime.projectors)  # each read model from the log on its own
    assert checksums(runtime) == together


def test_a_read_model_ahead_of_the_others_gets_only_what_it_has_not_seen(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    history = record(runtime, account)
    # Another process ran the stats (and only them) through the history so far; more came.
    Projector(runtime.store.app, runtime.store.db, runtime.stats.projection, 10**6).run_once()
    history.outcomes(history.send(*(f"s{n}@example.com" for n in range(4))))
    for process in runtime.processes:
        process.catch_up()
    assert 0 < runtime.stats.position() < runtime.store.head()
    follow(runtime, batch_size=10**6)  # one batch: it starts before the stats
    assert_as_rebuilt(runtime)


def test_a_position_moved_by_another_process_drops_that_read_model_from_the_batch(
    runtime: Runtime, account: tuple[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    record(runtime, account)
    other = Projector(runtime.store.app, runtime.store.db, runtime.stats.projection, 10**6)
    recorder = runtime.store.app.recorder
    head = recorder.max_notification_id
    raced: list[bool] = []

    def racing_head() -> Any:
        # Between the group's read of the positions and its transaction, another process
        # applies the whole log to the stats (counts: applied twice, they would be off).
        if not raced:
            raced.append(True)
            other.run_once()
        return head()

    monkeypatch.setattr(recorder, "max_notification_id", racing_head)
    runtime.read_models.batch_size = 10**6
    assert runtime.read_models.run_once() > 0
    assert raced
    monkeypatch.undo()
    top = runtime.store.head()
    assert all(p.position() == top for p in runtime.projectors)
    assert_as_rebuilt(runtime)  # the stats were not counted twice


def test_a_failing_read_model_holds_up_only_itself(
    runtime: Runtime, account: tuple[int, str], caplog: pytest.LogCaptureFixture
) -> None:
    record(runtime, account)
    with broken_stats(runtime), caplog.at_level(logging.ERROR, logger="postline.projections"):
        runtime.read_models.run_once()
    head = runtime.store.head()
    others = [p for p in runtime.projectors if p is not runtime.stats]
    assert all(p.position() == head for p in others)  # (one batch holds the whole log)
    assert runtime.stats.position() == 0
    assert "read model stats failed" in caplog.text
    # It sits out a while, then catches up on its own.
    assert runtime.read_models.run_once() == 0
    runtime.stats._retry_at = 0.0
    runtime.read_models.run_once()
    assert runtime.stats.position() == head
    assert_as_rebuilt(runtime)


def test_a_read_model_that_keeps_failing_does_not_hold_up_the_others(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    record(runtime, account)
    group = runtime.read_models
    group.batch_size = 3
    head = runtime.store.head()
    others = [p for p in runtime.projectors if p is not runtime.stats]
    with broken_stats(runtime):
        for _ in range(200):  # each round as if its time to sit out had passed
            runtime.stats._retry_at = 0.0
            group.run_once()
            if all(p.position() == head for p in others):
                break
    assert all(p.position() == head for p in others)
    assert runtime.stats.position() == 0
    runtime.stats._retry_at = 0.0
    follow(runtime, batch_size=3)
    assert_as_rebuilt(runtime)


def test_a_read_model_far_behind_catches_up_without_holding_up_the_others(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    history = record(runtime, account)
    follow(runtime)
    # As after an upgrade that adds a read model: the stats start from the beginning.
    db = runtime.store.db
    with db.transaction() as cursor:
        for table in runtime.stats.projection.tables:
            cursor.execute(db.prepare(f"DELETE FROM {{{table}}}"))
        cursor.execute(
            db.prepare("UPDATE {projection_positions} SET position = 0 WHERE name = 'stats'")
        )
    runtime.stats._seen = 0
    level = runtime.store.head()
    history.outcomes(history.send(*(f"late{n}@example.com" for n in range(4))))
    for process in runtime.processes:
        process.catch_up()

    runtime.read_models.batch_size = 3
    runtime.read_models.run_once()
    assert runtime.email_logs.position() > level  # not waiting for the stats
    assert 0 < runtime.stats.position() < level  # which took a batch of their own
    follow(runtime, batch_size=3)
    assert_as_rebuilt(runtime)
