"""The event-store application: one eventsourcing Application holding every aggregate type."""

from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    PersistenceError,
    ProgrammingError,
)

from adapters.database import StoreUrl, eventsourcing_env
from adapters.eventstore import PostgresEventStore, SQLiteEventStore
from adapters.sql import SqlDatabase
from domain.sequences import Sequence
from engine.errors import Conflict, StoreUnavailable

T = TypeVar("T")


class Postline(Application[UUID]):
    """All aggregates, one totally ordered notification log."""

    name = "Postline"
    snapshotting_intervals = {Sequence: 50}


class EventStore:
    """The application, its recorder (events + blobs) and the read-model database."""

    def __init__(self, url: StoreUrl, *, pool_size: int = 4, max_overflow: int = 8) -> None:
        self.url = url
        try:
            self.app = Postline(
                env=eventsourcing_env(url, pool_size=pool_size, max_overflow=max_overflow)
            )
        except PersistenceError as error:
            raise StoreUnavailable(
                f"cannot open the event store at {url.display}: {error}"
            ) from error
        recorder = self.app.recorder
        assert isinstance(recorder, SQLiteEventStore | PostgresEventStore)
        self.recorder: SQLiteEventStore | PostgresEventStore = recorder
        self.db = SqlDatabase(recorder)

    def get(self, aggregate_id: UUID) -> Any | None:
        """An aggregate by id, or None."""
        try:
            return call(self.app.repository.get, aggregate_id)
        except AggregateNotFoundError:
            return None

    def save(self, *aggregates: Any) -> None:
        """Record the pending events of `aggregates` in one transaction."""
        call(self.app.save, *aggregates)

    def get_blob(self, sha256: str) -> bytes | None:
        return self.get_blobs([sha256]).get(sha256)

    def get_blobs(self, shas: list[str], max_bytes: int | None = None) -> dict[str, bytes]:
        """The blobs found among `shas` (message heads and bodies), in one read; with
        `max_bytes`, only those no larger."""
        return call(self.recorder.get_blobs, shas, max_bytes)

    def head(self) -> int:
        """The highest notification id recorded so far."""
        return call(self.recorder.max_notification_id) or 0

    def close(self) -> None:
        self.db.close()
        self.app.close()
        if isinstance(self.recorder, SQLiteEventStore):
            self.recorder.write_lock.close()


def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store operation, translating persistence failures into engine errors."""
    try:
        return function(*args, **kwargs)
    except IntegrityError as error:
        raise Conflict(str(error)) from error
    except (ProgrammingError, DataError):
        raise
    except PersistenceError as error:
        raise StoreUnavailable(str(error)) from error
