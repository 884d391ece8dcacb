"""The MTA worker: claims due messages, delivers them to their MX hosts, records every outcome.

claim (leased rows of the delivery queue) -> route (MX lookup, cached) -> site (shaping: MX
rollup, limits) -> a connection task per allowed connection, reused for up to
`max_deliveries_per_connection` messages and held back by `max_message_rate` -> the reply
becomes `Delivered`, `SoftBounced` (with the next attempt from the retry schedule) or
`Bounced`, classified by the bounce rules. Outcomes are committed through the group committer;
only then does the queue row move on. A worker that dies mid-delivery leaves its leases to
expire and the messages are tried again.
"""

import asyncio
import contextlib
import logging
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from limits import RateLimitItem
from limits import parse as parse_limit
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from adapters.dkim_signing import Signer
from adapters.dns import MxHost, MxResolver, Route, RouteError
from adapters.smtp_client import ConnectFailed, MxConnection, Reply
from domain.addresses import domain_of
from domain.bounces import BounceRules, parse_reply
from domain.feedback_reports import MESSAGE_ID_HEADER
from domain.message import (
    DOMAIN_NOT_VERIFIED,
    SUSPENSION_CHECKS,
    SUSPENSION_INTERVAL_SECONDS,
    Message,
    follow_up,
)
from domain.mime import message_bytes
from domain.retry import RetrySchedule
from domain.shaping import Shaping, SitePolicy
from engine import policy
from engine.blobs import BlobReader
from engine.domains import verified_senders
from engine.errors import Conflict, StoreUnavailable
from engine.runtime import Runtime
from engine.sender_policy import SenderNotAllowed
from projections.delivery_queue import QueuedMessage, Retry, claim, release, renew, settle

log = logging.getLogger("postline.mta")

# Heads and bodies up to this size are read with the batch that claims them; the blob cache
# (engine.blobs) holds them for every message in flight, so none is dropped before it is sent.
READ_AHEAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class MtaSettings:
    """How a worker delivers (`postline serve --roles mta` options)."""

    helo: str = field(default_factory=socket.gethostname)
    mx_port: int = 25
    smarthost: tuple[str, int] | None = None  # all mail to one relay instead of the MX hosts
    return_path_domain: str | None = None  # VERP: bounces+<message id>@<this domain>
    batch_size: int = 500
    max_in_flight: int = 2000
    lease: timedelta = timedelta(minutes=10)
    # The scheduler tick: how often a worker looks for mail that fell due (retries, and mail
    # queued by other processes; mail queued by this process wakes it at once).
    tick: float = 0.25
    # After a partial batch, let the queue fill a little: fewer, larger claims.
    claim_coalesce: float = 0.02
    # how often the verified domains' DKIM keys are reloaded (a check in this process reloads
    # them at once)
    key_refresh: float = 60.0
    connect_timeout: float = 30.0
    command_timeout: float = 600.0  # RFC 5321 §4.5.3.2: up to 10 minutes after the data
    tls: bool = True


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A delivery attempt's result, to be recorded: the message, its event, its next try."""

    message: QueuedMessage
    event: Any
    retry_at: datetime | None


@dataclass(slots=True)
class _Site:
    policy: SitePolicy
    # transactions waiting for a connection: copies of one message, one per recipient
    queue: "asyncio.Queue[tuple[list[QueuedMessage], Route]]" = field(default_factory=asyncio.Queue)
    connections: int = 0
    rate: RateLimitItem | None = None  # the policy's max_message_rate, parsed once

    def __post_init__(self) -> None:
        rate = self.policy.max_message_rate
        if rate is not None:
            self.rate = parse_limit(f"{rate[0]} per {int(rate[1])} second")


class Mta:
    """One delivery worker, on the running event loop."""

    def __init__(
        self,
        runtime: Runtime,
        settings: MtaSettings | None = None,
        *,
        resolver: MxResolver | None = None,
        shaping: Shaping | None = None,
        rules: BounceRules | None = None,
        schedule: RetrySchedule | None = None,
        signer: Signer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.settings = settings or MtaSettings()
        self.resolver = resolver or MxResolver()
        self.shaping = shaping or policy.shaping()
        self.rules = rules or policy.bounce_rules()
        self.schedule = schedule or policy.retry_schedule()
        # keys from POSTLINE_DKIM_KEYS (or given), joined by the verified domains' own keys
        self._configured_signer = signer if signer is not None else policy.dkim_signer()
        self.signer = self._configured_signer
        self.clock = clock
        self.name = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._sites: dict[str, _Site] = {}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._tasks: set[asyncio.Task[None]] = set()  # routing and connections
        self._records: set[asyncio.Task[None]] = set()  # outcomes being committed
        self._outcomes: list[_Outcome] = []  # waiting for the recorder
        self._recorder: asyncio.Task[None] | None = None
        self._stopping = False
        # Claimed and not yet handed to a server: leases are renewed, and given back on stop.
        self._in_flight: dict[str, QueuedMessage] = {}
        self._room = asyncio.Event()
        self._wake = asyncio.Event()
        self._finished: list[str] = []
        self._retries: list[Retry] = []
        in_flight = 2 * READ_AHEAD_BYTES * self.settings.max_in_flight  # (64 MiB by default)
        self._blobs = BlobReader(self._read_blobs, cache_bytes=max(16 * 2**20, in_flight))
        self._providers: dict[str, str] = {}
        self._tracked: dict[str, tuple[bool, bool]] = {}  # domain -> (opens, clicks)
        self.delivered = 0  # outcomes recorded by this worker
        self.soft_bounced = 0
        self.bounced = 0
        self.suspended = 0  # held: the sending domain is not verified now
        self.rejected = 0  # held for the last time

    async def run(self) -> None:
        """Deliver until cancelled.

        On the way out, connections stop taking messages, outcomes already known are committed
        (never cancelled: a message sent must not be sent again), and the leases of messages
        not yet handed to a server are given back.
        """
        flusher = asyncio.create_task(self._flush_forever())
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.settings.tick,
            coalesce=True,  # a late tick runs once, never in a burst
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.add_job(
            self.refresh_keys,
            "interval",
            seconds=self.settings.key_refresh,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        # Listen before the first load: a domain verified meanwhile is not missed.
        self.runtime.on_queued(self.wake)
        self.runtime.on_domains_changed(self._keys_changed)
        await self.refresh_keys()
        # Claim again only once there is room for a good part of a batch: claiming one
        # message per delivery would cost a transaction each.
        low_water = self.settings.max_in_flight - max(1, self.settings.batch_size // 4)
        try:
            while True:
                if len(self._in_flight) > low_water:
                    self._room.clear()
                    await self._room.wait()
                    continue
                self._wake.clear()
                room = self.settings.max_in_flight - len(self._in_flight)
                batch = await self._claim(min(room, self.settings.batch_size))
                batch = [m for m in batch if m.message_id not in self._in_flight]
                if not batch:
                    await self._wake.wait()
                    continue
                by_domain: dict[str, list[QueuedMessage]] = {}
                for message in batch:
                    self._in_flight[message.message_id] = message
                    by_domain.setdefault(message.domain, []).append(message)
                for domain, messages in by_domain.items():
                    self._spawn(self._route(domain, messages))
                if len(batch) < self.settings.batch_size:
                    await asyncio.sleep(self.settings.claim_coalesce)
        finally:
            self._stopping = True
            self.runtime.on_queued(self.wake, remove=True)
            self.runtime.on_domains_changed(self._keys_changed, remove=True)
            scheduler.shutdown(wait=False)
            flusher.cancel()
            while self._tasks:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await asyncio.gather(flusher, *self._records, return_exceptions=True)
            await self._flush()
            if self._in_flight:
                with contextlib.suppress(Exception):
                    await self.runtime.run(
                        release, self.runtime.store.db, self.name, list(self._in_flight)
                    )

    async def refresh_keys(self) -> None:
        """Sign with the DKIM keys of the sending domains verified now, and track as they
        say."""
        try:
            senders = await self.runtime.run(
                verified_senders, self.runtime.store.db, self.runtime.secrets
            )
        except Exception as error:  # keep signing with the keys we have
            log.warning("DKIM keys of sending domains not loaded: %s", error)
            return
        self.signer = self._configured_signer.with_keys(senders.keys)
        self._tracked = senders.tracked

    def _keys_changed(self) -> None:
        # after the read model has the check: the keys are read from it
        async def refresh() -> None:
            await self.runtime.read_your_writes(self.runtime.domains)
            await self.refresh_keys()

        self._spawn(refresh())

    def wake(self) -> None:
        """Look for due mail now (called when this process has queued some)."""
        self._wake.set()

    async def _tick(self) -> None:
        self._wake.set()

    async def _claim(self, limit: int) -> list[QueuedMessage]:
        try:
            batch, blobs = await self.runtime.run(self._claim_and_read, limit)
        except Exception as error:  # the store is down: try again later
            log.warning("cannot claim work: %s", error)
            return []
        self._blobs.prime(blobs)
        return batch

    def _claim_and_read(self, limit: int) -> tuple[list[QueuedMessage], dict[str, bytes]]:
        """Claim due messages and read their heads and bodies ahead, in one trip to the
        pool: asked for per connection, they cost a trip per few messages. Large blobs are
        left to be read when their message goes (memory stays bounded by the batch)."""
        batch = claim(self.runtime.store.db, self.name, self.clock(), limit, self.settings.lease)
        if not batch:
            return batch, {}
        shas = [sha for message in batch for sha in (message.head, message.body)]
        try:
            return batch, self.runtime.store.get_blobs(shas, max_bytes=READ_AHEAD_BYTES)
        except Exception as error:  # the batch is claimed: each is read when its message goes
            log.warning("messages not read ahead: %s", error)
            return batch, {}

    def _spawn(self, work: Any, into: set[asyncio.Task[None]] | None = None) -> None:
        tasks = self._tasks if into is None else into
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _route(self, domain: str, messages: list[QueuedMessage]) -> None:
        if self.runtime.senders.policy == "verified":
            messages = await self._senders_allowed(messages)
            if not messages:
                return
        try:
            route = await self._resolve(domain)
        except RouteError as error:
            reply = Reply(error.code, error.text)
            for message in messages:
                self._record_soon(message, None, reply)
            return
        site = self._site(route)
        verp = bool(self.settings.return_path_domain)
        limit = 1 if verp else site.policy.max_recipients_per_transaction
        if site.rate is not None:  # one transaction must fit in the rate's window
            limit = min(limit, site.rate.amount)
        for transaction in transactions(messages, limit, alone=_per_recipient):
            site.queue.put_nowait((transaction, route))
        self._staff(site)

    async def _senders_allowed(self, messages: list[QueuedMessage]) -> list[QueuedMessage]:
        """The messages whose sending domain is verified now; the others are held."""
        allowed = []
        for message in messages:
            try:
                await self.runtime.senders.check_verified(message.account_id, message.sender)
            except SenderNotAllowed:
                self._spawn(self._suspend(message), into=self._records)
                continue
            except StoreUnavailable as error:
                log.warning("cannot check the sender of %s: %s", message.message_id, error)
                self._forget(message)  # its lease runs out, and it is tried again
                continue
            allowed.append(message)
        return allowed

    async def _suspend(self, message: QueuedMessage) -> None:
        """Hold a message whose sending domain lost its verification; reject it after the
        last check (spec §3.2)."""
        message_id = uuid.UUID(message.message_id)
        try:
            aggregate = await self.runtime.run(self.runtime.store.get, message_id)
            check = (getattr(aggregate, "suspensions", 0) or 0) + 1
            now = self.clock()
            version = message.version + 1
            next_check = now + timedelta(seconds=SUSPENSION_INTERVAL_SECONDS)
            if check > SUSPENSION_CHECKS:
                event = follow_up(
                    Message.Rejected, message_id, version, now, reason=DOMAIN_NOT_VERIFIED
                )
            else:
                event = follow_up(
                    Message.Suspended,
                    message_id,
                    version,
                    now,
                    check=check,
                    reason=DOMAIN_NOT_VERIFIED,
                    next_check_at=next_check,
                )
            await self.runtime.committer.commit([event])
        except (Conflict, StoreUnavailable) as error:
            log.info("message %s not held now: %s", message.message_id, error)
        else:
            if check > SUSPENSION_CHECKS:
                self._finished.append(message.message_id)
                self.rejected += 1
            else:
                self._retries.append((message.message_id, next_check, message.attempts, version))
                self.suspended += 1
        finally:
            self._forget(message)

    async def _resolve(self, domain: str) -> Route:
        if self.settings.smarthost is not None:
            host = self.settings.smarthost[0]
            return Route(domain, (MxHost(0, host, (host,)),))
        return await self.resolver.route(domain)

    def _site(self, route: Route) -> _Site:
        site_policy = self.shaping.site_for(h.host for h in route.hosts)
        site = self._sites.get(site_policy.site)
        if site is None:
            site = self._sites[site_policy.site] = _Site(site_policy)
        return site

    def _staff(self, site: _Site) -> None:
        """Open connections for the site's waiting mail, up to its connection limit."""
        while (
            not self._stopping
            and site.connections < site.policy.connection_limit
            and site.queue.qsize() > 0
        ):
            if site.connections and site.queue.qsize() <= site.connections:
                break
            site.connections += 1
            self._spawn(self._connection(site))

    async def _connection(self, site: _Site) -> None:
        connection: MxConnection | None = None
        idle = site.policy.idle_timeout.total_seconds()
        try:
            while True:
                try:
                    batch, route = site.queue.get_nowait()
                except asyncio.QueueEmpty:
                    try:
                        batch, route = await asyncio.wait_for(site.queue.get(), idle)
                    except TimeoutError:
                        return
                await self._hold_back(site, len(batch))
                if connection is not None and (
                    not connection.usable
                    or connection.deliveries >= site.policy.max_deliveries_per_connection
                    # a provider site spans many domains: only reuse a connection to a host
                    # that this message's domain lists
                    or all(connection.host != host.host for host in route.hosts)
                ):
                    await connection.close()
                    connection = None
                if connection is None:
                    try:
                        connection = await self._open(route)
                    except ConnectFailed as failure:
                        for message in batch:
                            self._record_soon(message, None, failure.reply)
                        self._fail_waiting(site, route, failure.reply)
                        return
                first = batch[0]
                try:
                    data = await self._message_bytes(first)
                except StoreUnavailable as error:
                    log.warning("cannot read message %s: %s", first.message_id, error)
                    for message in batch:
                        self._forget(message)  # its lease runs out, and it is tried again
                    continue
                except Exception as error:  # a message we cannot render or sign
                    log.exception("message %s cannot be sent", first.message_id)
                    reply = Reply(554, f"5.6.0 Message cannot be sent: {error}")
                    for message in batch:
                        self._record_soon(message, None, reply)
                    continue
                replies = await connection.send(
                    self._return_path(first), [m.recipient for m in batch], data
                )
                for message in batch:
                    self._forget(message)  # handed to a server: never given back, never renewed
                    # The next transaction goes out while these outcomes are being committed.
                    self._record_soon(message, connection, replies[message.recipient])
        finally:
            site.connections -= 1
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            if site.queue.qsize():
                self._staff(site)

    async def _open(self, route: Route) -> MxConnection:
        """A connection to the most preferred MX host that answers."""
        port = self.settings.smarthost[1] if self.settings.smarthost else self.settings.mx_port
        failure: ConnectFailed | None = None
        for host in route.hosts:
            try:
                return await MxConnection.open(
                    host.host,
                    host.addresses,
                    port=port,
                    helo=self.settings.helo,
                    timeout=self.settings.connect_timeout,
                    command_timeout=self.settings.command_timeout,
                    tls=self.settings.tls,
                )
            except ConnectFailed as error:
                failure = error
        assert failure is not None
        raise failure

    def _fail_waiting(self, site: _Site, route: Route, reply: Reply) -> None:
        """Nobody answers at these hosts: what waits for them would hit the same wall."""
        waiting = []
        while not site.queue.empty():
            waiting.append(site.queue.get_nowait())
        for batch, other in waiting:
            if other.hosts == route.hosts:
                for message in batch:
                    self._record_soon(message, None, reply)
            else:
                site.queue.put_nowait((batch, other))

    def _record_soon(
        self, message: QueuedMessage, connection: MxConnection | None, reply: Reply
    ) -> None:
        """Record an outcome without holding up the caller: outcomes gather while the last
        ones are being committed and go in one write; shutting down waits for them."""
        try:
            self._outcomes.append(self._outcome(message, connection, reply))
        except Exception:  # a bug: its lease runs out, and it is tried again
            log.exception("outcome of %s not recorded", message.message_id)
            self._forget(message)
            return
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_outcomes())
            self._records.add(self._recorder)
            self._recorder.add_done_callback(self._records.discard)

    def _provider(self, mx_host: str) -> str:
        """The mailbox provider of an MX host, from the shaping table's patterns, once per host."""
        name = self._providers.get(mx_host)
        if name is None:
            name = self._providers[mx_host] = self.shaping.mailbox_provider(mx_host)
        return name

    def _forget(self, message: QueuedMessage) -> None:
        self._in_flight.pop(message.message_id, None)
        self._room.set()

    async def _hold_back(self, site: _Site, messages: int) -> None:
        """Wait until the site's message rate allows `messages` more."""
        item = site.rate
        if item is None:
            return
        while not await self._limiter.hit(item, site.policy.site, cost=messages):
            stats = await self._limiter.get_window_stats(item, site.policy.site)
            await asyncio.sleep(max(0.01, stats.reset_time - self.clock().timestamp()))

    async def _message_bytes(self, message: QueuedMessage) -> bytes:
        head = await self._blobs.get(message.head)
        body = await self._blobs.get(message.body)
        domain = domain_of(message.sender)
        data = message_bytes(message.format, head, body, self._tracking(message, domain))
        if message.stream == "bulk":
            data = self._bulk_headers(message, data) + data
        if self.signer and self.signer.keys_for(domain):
            # RSA signing is pure Python in dkimpy (milliseconds): off the event loop.
            data = await self.runtime.run(self.signer.sign, data, domain)
        return data

    def _tracking(self, message: QueuedMessage, domain: str) -> Callable[[str], str] | None:
        """How the message's HTML is tracked: as its verified domain's settings say, with a
        public URL for the pixel and the redirect to live under (none otherwise)."""
        links = self.runtime.tracking_links
        tracked = self._tracked.get(domain.lower())
        if links is None or tracked is None:
            return None
        return partial(links.rewrite, message.message_id, *tracked)

    def _bulk_headers(self, message: QueuedMessage, data: bytes) -> bytes:
        """What bulk mail carries for each recipient: the message's id (feedback-loop reports
        lead back to it) and, unless the sender set its own, `Precedence: bulk` and a one-click
        unsubscribe link (with `POSTLINE_PUBLIC_URL`)."""
        headers = f"{MESSAGE_ID_HEADER}: {message.message_id}\r\n"
        head = b"\n" + data[: data.find(b"\r\n\r\n")].lower()
        if b"\nprecedence:" not in head:
            headers += "Precedence: bulk\r\n"
        url = None
        if self.runtime.public_url and b"\nlist-unsubscribe:" not in head:
            try:
                url = self.runtime.unsubscribe_links.url(message.message_id)
            except ValueError as error:  # the secret key: the mail goes, without the link
                log.error("no unsubscribe link for %s: %s", message.message_id, error)
        if url is not None:
            headers += f"List-Unsubscribe: <{url}>\r\n{ONE_CLICK}\r\n"
        return headers.encode("ascii")

    async def _read_blobs(self, shas: list[str]) -> dict[str, bytes]:
        return await self.runtime.run(self.runtime.store.get_blobs, shas)

    def _return_path(self, message: QueuedMessage) -> str:
        domain = self.settings.return_path_domain
        if not domain:
            return message.sender
        return f"bounces+{uuid.UUID(message.message_id).hex}@{domain}"

    def _outcome(
        self, message: QueuedMessage, connection: MxConnection | None, reply: Reply
    ) -> "_Outcome":
        """The message's next event for a reply (and when to try again, if it will be)."""
        attempt = message.attempts + 1
        now = self.clock()
        message_id = uuid.UUID(message.message_id)
        version = message.version + 1
        where = {
            "attempt": attempt,
            "mx": connection.host if connection else None,
            "sending_ip": connection.sending_ip if connection else None,
            "mailbox_provider": self._provider(connection.host) if connection else None,
        }
        if reply.accepted:
            event = follow_up(
                Message.Delivered,
                message_id,
                version,
                now,
                **where,
                code=reply.code,
                response=reply.message,
            )
            return _Outcome(message, event, None)
        parsed = parse_reply(reply.code, reply.message)
        failure = {
            "code": reply.code,
            "enhanced_code": parsed.enhanced,
            "response": str(parsed),
            "bounce_category": self.rules.category(parsed),
        }
        retry_at = None
        if not parsed.permanent:
            retry_at = self.schedule.next_attempt(
                attempt, message.accepted_at, now, random.random()
            )
        if retry_at is None:
            event = follow_up(Message.Bounced, message_id, version, now, **where, **failure)
        else:
            event = follow_up(
                Message.SoftBounced,
                message_id,
                version,
                now,
                **where,
                **failure,
                next_attempt_at=retry_at,
            )
        return _Outcome(message, event, retry_at)

    async def _record_outcomes(self) -> None:
        """Commit the outcomes gathered so far, together, and move the queue on; again while
        more came meanwhile. One that conflicts (another worker recorded that attempt) fails
        alone; one that is not recorded is left to its lease, and tried again."""
        while self._outcomes:
            outcomes, self._outcomes = self._outcomes, []
            errors = await self.runtime.committer.commit_each([[o.event] for o in outcomes])
            for outcome, error in zip(outcomes, errors, strict=True):
                self._forget(outcome.message)
                message_id = outcome.message.message_id
                if isinstance(error, Conflict):
                    log.info("message %s: another worker recorded this attempt", message_id)
                elif error is not None:
                    log.warning("outcome of %s not recorded: %s", message_id, error)
                else:
                    self._recorded(outcome)

    def _recorded(self, outcome: "_Outcome") -> None:
        """What the queue and the counters learn of a recorded outcome."""
        message, retry_at = outcome.message, outcome.retry_at
        if retry_at is None:
            self._finished.append(message.message_id)
        else:
            self._retries.append(
                (message.message_id, retry_at, message.attempts + 1, message.version + 1)
            )
        if isinstance(outcome.event, Message.Delivered):
            self.delivered += 1
        elif retry_at is None:
            self.bounced += 1
        else:
            self.soft_bounced += 1

    async def _flush_forever(self) -> None:
        renewed = self.clock()
        every = self.settings.lease / 3
        while True:
            await asyncio.sleep(0.05)
            await self._flush()
            if self._in_flight and self.clock() - renewed >= every:
                renewed = self.clock()
                try:
                    await self.runtime.run(
                        renew,
                        self.runtime.store.db,
                        self.name,
                        list(self._in_flight),
                        renewed,
                        self.settings.lease,
                    )
                except Exception as error:  # they may lapse: the queue stays correct
                    log.warning("leases not renewed: %s", error)

    async def _flush(self) -> None:
        if not (self._finished or self._retries):
            return
        finished, retries = self._finished, self._retries
        self._finished, self._retries = [], []
        try:
            await self.runtime.run(settle, self.runtime.store.db, finished, retries)
        except Exception as error:  # the projector will get there from the log
            log.warning("queue not settled: %s", error)


def transactions(
    messages: list[QueuedMessage],
    limit: int,
    alone: Callable[[QueuedMessage], bool] = lambda message: False,
) -> list[list[QueuedMessage]]:
    """Copies of one message (same sender and content) to one domain, as SMTP transactions of
    at most `limit` distinct recipients each; everything else, and each message `alone` says
    differs per recipient, goes alone."""
    groups: dict[tuple[str, str, str, str], list[list[QueuedMessage]]] = {}
    seen: dict[int, set[str]] = {}
    singles: list[list[QueuedMessage]] = []
    for message in messages:
        if alone(message):
            singles.append([message])
            continue
        key = (message.sender, message.format, message.head, message.body)
        batches = groups.setdefault(key, [])
        for batch in batches:
            recipients = seen[id(batch)]
            if len(batch) < limit and message.recipient not in recipients:
                batch.append(message)
                recipients.add(message.recipient)
                break
        else:
            batch = [message]
            batches.append(batch)
            seen[id(batch)] = {message.recipient}
    return [batch for batches in groups.values() for batch in batches] + singles


ONE_CLICK = "List-Unsubscribe-Post: List-Unsubscribe=One-Click"  # RFC 8058


def _per_recipient(message: QueuedMessage) -> bool:
    """Bulk mail carries headers of its own recipient (`_bulk_headers`): never shared."""
    return message.stream == "bulk"
