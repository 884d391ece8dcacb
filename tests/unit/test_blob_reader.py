"""Batched blob reads for delivery (engine.blobs.BlobReader)."""

import asyncio

import pytest

from engine.blobs import BlobReader
from engine.errors import StoreUnavailable

STORE = {f"sha{i}": f"data {i}".encode() for i in range(50)}


class Store:
    def __init__(self, fail: bool = False) -> None:
        self.reads: list[list[str]] = []
        self.fail = fail

    async def read(self, shas: list[str]) -> dict[str, bytes]:
        self.reads.append(shas)
        await asyncio.sleep(0.01)
        if self.fail:
            raise OSError("disk on fire")
        return {sha: STORE[sha] for sha in shas if sha in STORE}


def test_concurrent_requests_share_reads() -> None:
    store = Store()

    async def main() -> list[bytes]:
        reader = BlobReader(store.read)
        first = asyncio.gather(*(reader.get(f"sha{i}") for i in range(20)))
        await asyncio.sleep(0.005)  # that read is under way: these wait for the next one
        second = asyncio.gather(*(reader.get(f"sha{i}") for i in range(20, 40)))
        return [*await first, *await second]

    assert asyncio.run(main()) == [STORE[f"sha{i}"] for i in range(40)]
    assert [len(r) for r in store.reads] == [20, 20]


def test_the_same_blob_is_read_once() -> None:
    store = Store()

    async def main() -> None:
        reader = BlobReader(store.read)
        await asyncio.gather(*(reader.get("sha1") for _ in range(5)))
        assert await reader.get("sha1") == STORE["sha1"]  # from the cache

    asyncio.run(main())
    assert sum(len(r) for r in store.reads) == 1


def test_missing_and_unreadable_blobs_raise_store_unavailable() -> None:
    async def main(store: Store, sha: str) -> None:
        await BlobReader(store.read).get(sha)

    with pytest.raises(StoreUnavailable, match="missing"):
        asyncio.run(main(Store(), "nope"))
    with pytest.raises(StoreUnavailable, match="disk on fire"):
        asyncio.run(main(Store(fail=True), "sha1"))


def test_the_cache_is_bounded_in_bytes() -> None:
    store = Store()

    async def main() -> None:
        reader = BlobReader(store.read, cache_bytes=40)  # room for about five 7-byte blobs
        for i in range(10):
            await reader.get(f"sha{i}")
        await reader.get("sha9")  # recent: cached
        await reader.get("sha0")  # evicted: read again

    asyncio.run(main())
    assert [r for r in store.reads if r == ["sha0"]] == [["sha0"], ["sha0"]]
    assert [r for r in store.reads if r == ["sha9"]] == [["sha9"]]
