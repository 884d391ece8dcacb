"""Group commit: concurrent accepts share one transaction.

Callers hand over new events (and the blobs they refer to) and wait. One writer thread takes
everything that has queued up while the previous transaction was in flight and records it with
a single insert, so the cost of a transaction (pool checkout, table lock, fsync) is paid once
per batch instead of once per message. A caller's future resolves only after the commit that
holds its events, which is what lets the API answer 200 and the SMTP listener 250 safely.
"""

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import IntegrityError, PersistenceError

from engine.errors import Conflict, StoreUnavailable
from engine.store import EventStore

log = logging.getLogger("postline.committer")

Blob = tuple[str, bytes]


@dataclass(slots=True)
class _Pending:
    events: list[Any]
    blobs: Sequence[Blob]
    # Either an asyncio future (resolved on its loop) or a concurrent one (for threads).
    future: "asyncio.Future[None] | Future[None]"
    loop: asyncio.AbstractEventLoop | None = None


_STOP = object()


class GroupCommitter:
    """Coalesce concurrent writes into one transaction per batch."""

    def __init__(self, store: EventStore, *, max_events: int = 5000) -> None:
        self._store = store
        self._max_events = max_events
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        self.batches = 0
        self.events = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="postline-committer", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Commit what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def on_commit(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the writer thread) after every successful commit."""
        self._listeners.append(listener)

    def submit(self, events: list[Any], blobs: Sequence[Blob] = ()) -> Future[None]:
        """Queue `events` from a thread; the future resolves once they are durable."""
        future: Future[None] = Future()
        self._enqueue(_Pending(events, blobs, future))
        return future

    async def commit(self, events: list[Any], blobs: Sequence[Blob] = ()) -> None:
        """Await the durable commit of `events` (raises StoreUnavailable or Conflict)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._enqueue(_Pending(events, blobs, future, loop))
        await future

    async def commit_each(self, writes: Sequence[list[Any]]) -> list[BaseException | None]:
        """Await the durable commit of several independent writes, queued together so that
        they share a transaction: each one's error (Conflict, StoreUnavailable) or None. A
        write that conflicts fails alone (see `_write`)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[None]] = []
        for events in writes:
            futures.append(future := loop.create_future())
            self._enqueue(_Pending(events, (), future, loop))
        return await asyncio.gather(*futures, return_exceptions=True)

    def _enqueue(self, pending: _Pending) -> None:
        """Queue a write; it is committed once the writer thread runs (see `start`)."""
        self._queue.put(pending)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            size = len(first.events)
            while size < self._max_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                size += len(item.events)
            self._write(batch)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            self._put(batch)
        except IntegrityError as error:
            if len(batch) == 1:
                _resolve(batch, Conflict(str(error)))
                return
            # One writer conflicted: record the others on their own so only it fails.
            for pending in batch:
                self._write([pending])
            return
        except PersistenceError as error:
            log.warning("commit of %d writes failed: %s", len(batch), error)
            _resolve(batch, StoreUnavailable(str(error)))
            return
        except Exception as error:  # a bug: fail the callers, keep the writer alive
            log.exception("commit of %d writes failed", len(batch))
            _resolve(batch, error)
            return
        _resolve(batch, None)
        for listener in self._listeners:
            listener()

    def _put(self, batch: list[_Pending]) -> None:
        events = [e for pending in batch for e in pending.events]
        blobs = list({sha: (sha, data) for p in batch for sha, data in p.blobs}.values())
        self._store.app.events.put(events, blobs=blobs)
        self.batches += 1
        self.events += len(events)


def _resolve(batch: list[_Pending], error: BaseException | None) -> None:
    """Settle every caller's future: one wake-up per event loop, however many callers."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for pending in batch:
        if pending.loop is None:
            future = pending.future
            assert isinstance(future, Future)
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)
        else:
            by_loop.setdefault(pending.loop, []).append(pending.future)  # type: ignore[arg-type]
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, futures, error)


def _settle(futures: list["asyncio.Future[None]"], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the caller went away (cancelled)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
