"""Who may send from which domain: an account sends only from its DNS-verified domains, and a
token only from the domains it administers (all of them for an account admin).

Exact domains: a subdomain must be verified on its own, and a relayed message's From: header
must be of the envelope sender's domain (spec §6.3). With the policy `any`
(`--sender-policy any`, for development), an account admin may send from anything and a domain
token from its domain, verified or not. Each account's domains are read from the
sending-domains read model and cached for a few seconds, so a check on the accept path costs
no I/O.
"""

import asyncio
import threading
import time
from collections.abc import Callable

from adapters.sql import SqlDatabase
from domain.addresses import comparable_domain, domain_of
from engine.accounts import Principal
from engine.store import call
from projections.sending_domains import domain_names

POLICIES = ("verified", "any")
CACHE_SECONDS = 5.0
UNVERIFIED = "it is not a verified sending domain of this account"
NOT_THIS_TOKENS = "this API token may not send from it"
SYSTEM_ONLY = "it is this installation's own address"


class SenderNotAllowed(Exception):
    """The sender's domain is not a verified sending domain of the account, or not one the
    token may send from."""

    def __init__(self, domain: str, why: str = UNVERIFIED) -> None:
        super().__init__(f"sending from {domain} is not allowed: {why}")
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
        system_sender: str | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"sender policy: choose from {', '.join(POLICIES)} (got {policy!r})")
        self.policy = policy
        self.system_sender = system_sender.lower() if system_sender else None
        self._db = db
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[int, tuple[float, dict[str, tuple[int, bool]]]] = {}
        self._lock = threading.Lock()

    def domains(self, account_id: int) -> dict[str, tuple[int, bool]]:
        """The account's domains: name -> (id, verified) (cached; read when stale)."""
        entry = self._cache.get(account_id)
        now = self._clock()
        if entry is not None and entry[0] > now:
            return entry[1]
        names = call(domain_names, self._db, account_id)
        with self._lock:
            self._cache[account_id] = (now + self._ttl, names)
        return names

    async def check(self, principal: Principal, sender: str) -> None:
        """SenderNotAllowed unless the principal may send as `sender`."""
        access = principal.access
        if self.system_sender is not None and sender.lower() == self.system_sender:
            raise SenderNotAllowed(domain_of(sender), SYSTEM_ONLY)  # under any policy
        if self.policy == "any" and access.administers_account():
            return
        domain = comparable_domain(domain_of(sender))
        domain_id, verified = (await self._names(principal.account_id)).get(domain, (0, False))
        if self.policy == "verified" and not verified:
            raise SenderNotAllowed(domain)
        if not access.administers_domain(domain_id):
            raise SenderNotAllowed(domain, NOT_THIS_TOKENS if domain_id else UNVERIFIED)

    async def check_verified(self, account_id: int, sender: str) -> None:
        """SenderNotAllowed unless `sender`'s domain is one the account may send from now
        (for mail already accepted, whose token was checked then). The installation's own
        address always may: only Postline itself sends from it."""
        if self.policy == "any" or sender.lower() == self.system_sender:
            return
        domain = comparable_domain(domain_of(sender))
        if not (await self._names(account_id)).get(domain, (0, False))[1]:
            raise SenderNotAllowed(domain)

    async def _names(self, account_id: int) -> dict[str, tuple[int, bool]]:
        entry = self._cache.get(account_id)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.domains, account_id)

    def forget(self, account_id: int) -> None:
        """Drop the cached domains of an account (its domains just changed)."""
        with self._lock:
            self._cache.pop(account_id, None)
