"""Calls per account to one account-level API, in a moving window (the `limits` library),
counted per process; beyond the limit the API answers 429."""

from limits import parse as parse_limit
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter


class RateLimit:
    """`rate` as `limits` writes it (`10/minute`), for the API named `api`."""

    def __init__(self, rate: str, api: str) -> None:
        self._item = parse_limit(rate)
        self._api = api
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def allows(self, account_id: int) -> bool:
        return await self._limiter.hit(self._item, self._api, str(account_id))
