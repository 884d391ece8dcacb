"""Checking sending domains' DNS records: on demand, and on a schedule (apscheduler).

Every live domain is checked once an interval (an hour by default, spec §6.2); a check looks
all of a domain's records up at once, uncached, and records the verdicts on the aggregate.
"""

import logging
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from adapters.dns import RecordLookup
from engine.domains import check_records, expected, get_domain, record_check
from engine.errors import Conflict
from projections.sending_domains import live_domains

if TYPE_CHECKING:
    from engine.runtime import Runtime

log = logging.getLogger("postline.domains")

CHECK_ATTEMPTS = 3  # a settings change saved meanwhile makes the save conflict: try again


class DomainChecker:
    """Runs DNS checks for one process."""

    def __init__(self, runtime: "Runtime", lookup: RecordLookup | None = None) -> None:
        self.runtime = runtime
        self.lookup = lookup or RecordLookup()
        self._scheduler: AsyncIOScheduler | None = None

    async def check(self, account_id: int, domain_id: int) -> None:
        """Check one domain now (NoSuchDomain if it is not the account's)."""
        store, config = self.runtime.store, self.runtime.domain_config
        for attempt in range(1, CHECK_ATTEMPTS + 1):
            domain = await self.runtime.run(get_domain, store, account_id, domain_id)
            results = await check_records(self.lookup, expected(domain, config))
            try:
                await self.runtime.run(
                    record_check,
                    store,
                    config,
                    account_id,
                    domain_id,
                    results,
                    None,
                    domain.version,
                )
                self.runtime.domains_changed()
                return
            except Conflict:
                if attempt == CHECK_ATTEMPTS:
                    raise

    async def check_all(self) -> int:
        """Check every live domain; returns how many were checked."""
        domains = await self.runtime.run(live_domains, self.runtime.store.db)
        checked = 0
        for account_id, domain_id in domains:
            try:
                await self.check(account_id, domain_id)
                checked += 1
            except Exception as error:  # one domain's trouble must not stop the round
                log.warning("DNS check of domain %d failed: %s", domain_id, error)
        return checked

    def start(self, interval: float) -> None:
        """Check every live domain each `interval` seconds, on the running loop."""
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self.check_all,
            "interval",
            seconds=interval,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
