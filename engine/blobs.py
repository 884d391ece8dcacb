"""Reading message heads and bodies for delivery, many per database round trip.

Each connection of the MTA asks for the blobs of its next message. Asked one at a time, every
blob costs a transaction; here the requests that arrive while a read is running are gathered
and answered by the next read, so twenty busy connections cost one query, not twenty. Memory
stays bounded by the number of connections (and a small cache of recent blobs, which the
copies of one message to several recipients share, bounded in bytes).
"""

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from engine.errors import StoreUnavailable

Read = Callable[[list[str]], Awaitable[dict[str, bytes]]]


class BlobReader:
    """Coalesces concurrent blob requests into batched reads (see the module docstring)."""

    def __init__(self, read: Read, cache_bytes: int = 16 * 2**20) -> None:
        self._read = read
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._wanted: dict[str, asyncio.Future[bytes]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, sha: str) -> bytes:
        """The blob's bytes; StoreUnavailable when it cannot be read or is missing."""
        cached = self._cache.get(sha)
        if cached is not None:
            self._cache.move_to_end(sha)
            return cached
        future = self._wanted.get(sha)
        if future is None:
            future = self._wanted[sha] = asyncio.get_running_loop().create_future()
            if self._reader is None:
                self._reader = asyncio.create_task(self._read_wanted())
        return await asyncio.shield(future)

    async def _read_wanted(self) -> None:
        try:
            while self._wanted:
                wanted, self._wanted = self._wanted, {}
                try:
                    found = await self._read(list(wanted))
                except Exception as error:  # every waiter learns why
                    failure = StoreUnavailable(f"cannot read message data: {error}")
                    for future in wanted.values():
                        _fail(future, failure)
                    continue
                for sha, future in wanted.items():
                    data = found.get(sha)
                    if data is None:
                        _fail(future, StoreUnavailable(f"blob {sha} is missing"))
                    else:
                        self._remember(sha, data)
                        if not future.done():
                            future.set_result(data)
        finally:
            self._reader = None

    def prime(self, blobs: dict[str, bytes]) -> None:
        """Keep blobs read ahead (those of a claimed batch) for the requests to come."""
        for sha, data in blobs.items():
            if sha not in self._cache:
                self._remember(sha, data)

    def _remember(self, sha: str, data: bytes) -> None:
        if len(data) > self._cache_bytes // 4:
            return
        self._cache[sha] = data
        self._cached += len(data)
        while self._cached > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached -= len(dropped)


def _fail(future: "asyncio.Future[bytes]", error: Exception) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # retrieved: a waiter that was cancelled meanwhile is no warning
