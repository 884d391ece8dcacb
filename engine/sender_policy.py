"""Who may send from which domain: an account sends only from its DNS-verified domains.

Exact domains: a subdomain must be verified on its own, and a relayed message's From: header
must be of the envelope sender's domain (spec §6.3). With the policy `any`
(`--sender-policy any`, for development), every sender is allowed. Each account's verified
domains are read from the sending-domains read model and cached for a few seconds, so a check
on the accept path costs no I/O.
"""

import asyncio
import threading
import time
from collections.abc import Callable

from adapters.sql import SqlDatabase
from domain.addresses import comparable_domain, domain_of
from engine.store import call
from projections.sending_domains import verified_names

POLICIES = ("verified", "any")
CACHE_SECONDS = 5.0


class SenderNotAllowed(Exception):
    """The sender's domain is not a verified sending domain of the account."""

    def __init__(self, domain: str) -> None:
        super().__init__(
            f"sending from {domain} is not allowed: it is not a verified sending domain of "
            "this account"
        )
        self.domain = domain


class HeaderFromMismatch(Exception):
    """A relayed message whose From: header is not of the envelope sender's domain."""

    def __init__(self, header: str | None, envelope: str) -> None:
        super().__init__(f"From: header domain {header or '(none)'} is not {envelope}")


class SenderDomains:
    """The sender policy of one process."""

    def __init__(
        self,
        db: SqlDatabase,
        policy: str = "verified",
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"sender policy: choose from {', '.join(POLICIES)} (got {policy!r})")
        self.policy = policy
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[int, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def domains(self, account_id: int) -> frozenset[str]:
        """The account's verified domains (cached; reads the read model when stale)."""
        entry = self._cache.get(account_id)
        now = self._clock()
        if entry is not None and entry[0] > now:
            return entry[1]
        names = frozenset(call(verified_names, self._db, account_id))
        with self._lock:
            self._cache[account_id] = (now + self._ttl, names)
        return names

    async def check(self, account_id: int, sender: str) -> None:
        """SenderNotAllowed unless `sender`'s domain may send for the account."""
        if self.policy == "any":
            return
        domain = comparable_domain(domain_of(sender))
        entry = self._cache.get(account_id)
        if entry is not None and entry[0] > self._clock():
            names = entry[1]
        else:
            names = await asyncio.get_running_loop().run_in_executor(None, self.domains, account_id)
        if domain not in names:
            raise SenderNotAllowed(domain)

    def forget(self, account_id: int) -> None:
        """Drop the cached domains of an account (its domains just changed)."""
        with self._lock:
            self._cache.pop(account_id, None)
