"""Wiring for a running Postline: event store, committer, authenticator, acceptor, projectors."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.persistence import PersistenceError

from adapters.database import StoreUrl, schema_lock
from adapters.runner_locks import RunnerLocks
from adapters.secrets import SecretBox, secret_box
from domain.limits import DEFAULT_LIMITS, SendLimits
from engine import settings
from engine.accept import Acceptor
from engine.accounts import Authenticator
from engine.committer import GroupCommitter
from engine.dispatch import Dispatch
from engine.domain_checks import DomainChecker
from engine.domains import DomainConfig
from engine.errors import StoreUnavailable
from engine.opt_outs import UnsubscribeLinks
from engine.raw_messages import RawMessageLinks
from engine.sender_policy import SenderDomains
from engine.store import EventStore
from engine.suppressions import AutoSuppress
from engine.tracking import TrackingLinks
from engine.webhook_sender import WebhookSender
from projections.api_tokens import ApiTokens
from projections.audit_log import AuditLog
from projections.delivery_queue import DeliveryQueue
from projections.email_logs import EmailLogs
from projections.runner import Projector, ProjectorGroup
from projections.sending_domains import SendingDomains
from projections.stats import Stats
from projections.suppressions import Suppressions
from projections.webhook_outbox import WebhookOutbox

log = logging.getLogger("postline.runtime")

T = TypeVar("T")

# Commits in this process wake the projectors at once; this bounds how long events written by
# other processes (workers, the CLI, other hosts) wait to show up in the read models.
PROJECTION_POLL_SECONDS = 0.1
# After a partial batch, let new events accumulate briefly: fewer, larger read-model
# transactions cost far less than one per commit under load.
PROJECTION_COALESCE_SECONDS = 0.05
# A process standing by for a read model another process runs (PostgreSQL) tries its lock
# this often: how long a read model can stall after its runner dies.
RUNNER_STANDBY_SECONDS = 2.0
READ_YOUR_WRITES_TIMEOUT = 2.0
DOMAIN_CHECK_SECONDS = 3600.0  # spec §6.2: every domain's records are re-checked hourly


class Runtime:
    """Everything one Postline process runs, started and stopped together."""

    def __init__(
        self,
        url: StoreUrl,
        *,
        limits: SendLimits = DEFAULT_LIMITS,
        io_threads: int = 8,
        projections: bool = True,
        data_dir: Path | None = None,
        domain_config: DomainConfig | None = None,
        domain_check_interval: float = DOMAIN_CHECK_SECONDS,
        sender_policy: str = "verified",
        public_url: str | None = None,
    ) -> None:
        try:
            with schema_lock(url):
                self.store = EventStore(url)
                self.committer = GroupCommitter(self.store)
                self.email_logs = Projector(self.store.app, self.store.db, EmailLogs())
                self.queue = Projector(self.store.app, self.store.db, DeliveryQueue())
                self.domains = Projector(self.store.app, self.store.db, SendingDomains())
                self.suppressions = Projector(self.store.app, self.store.db, Suppressions())
                self.tokens = Projector(self.store.app, self.store.db, ApiTokens())
                self.stats = Projector(self.store.app, self.store.db, Stats())
                self.audit = Projector(self.store.app, self.store.db, AuditLog())
                # Read models: dropped and rebuilt by `postline replay`.
                self.projectors = [
                    self.email_logs,
                    self.queue,
                    self.domains,
                    self.suppressions,
                    self.tokens,
                    self.stats,
                    self.audit,
                ]
                # ... followed together: one read of the log, one transaction per batch
                self.read_models = ProjectorGroup(self.projectors)
                # Processes follow the log too, but write events: never replayed.
                self.dispatcher = Projector(self.store.app, self.store.db, Dispatch(self.committer))
                self.suppressor = Projector(self.store.app, self.store.db, AutoSuppress(self.store))
                # (what it queued for webhooks is sent and gone: never replayed either)
                self.webhook_outbox = Projector(self.store.app, self.store.db, WebhookOutbox())
                self.processes = [self.dispatcher, self.suppressor, self.webhook_outbox]
                for projector in [*self.projectors, *self.processes]:
                    projector.create_schema()
        except PersistenceError as error:
            raise StoreUnavailable(f"cannot open the store at {url.display}: {error}") from error
        self.domain_config = domain_config or settings.domain_config()
        self.auth = Authenticator(self.store)
        self.senders = SenderDomains(
            self.store.db, sender_policy, system_sender=self.domain_config.system_sender
        )
        self.acceptor = Acceptor(self.committer, limits, senders=self.senders)
        self.limits = limits
        self.runs_projections = projections
        self.data_dir = data_dir or settings.data_dir(None)
        self.domain_check_interval = domain_check_interval
        self._secrets: SecretBox | None = None
        self._links: UnsubscribeLinks | None = None
        self.public_url = public_url if public_url is not None else settings.public_url()
        self.domain_checker = DomainChecker(self)
        self.webhook_sender = WebhookSender(self)
        self._executor = ThreadPoolExecutor(io_threads, thread_name_prefix="postline-io")
        self._wakes: list[asyncio.Event] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._queued_listeners: list[Callable[[], None]] = []
        self._domain_listeners: list[Callable[[], None]] = []
        self.runner_locks = RunnerLocks(url)

    def start(self) -> None:
        """Start the committer (synchronous part of start-up)."""
        self.committer.start()

    async def start_background(self) -> None:
        """Start the projector loops on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self.committer.on_commit(self._poke)
        if self.runs_projections:
            followers = [(self.projectors, self.read_models)]
            followers += [([process], None) for process in self.processes]
            for members, group in followers:
                wake = asyncio.Event()
                self._wakes.append(wake)
                self._tasks.append(asyncio.create_task(self._follow(members, group, wake)))
        if self.runs_projections and self.domain_check_interval:
            self.domain_checker.start(self.domain_check_interval)
        if self.runs_projections:
            self.webhook_sender.start()

    @property
    def secrets(self) -> SecretBox:
        """The installation's box for DKIM private keys (see adapters.secrets)."""
        if self._secrets is None:
            self._secrets = secret_box(self.data_dir)
        return self._secrets

    @property
    def unsubscribe_links(self) -> UnsubscribeLinks:
        """Signed unsubscribe URLs under `POSTLINE_PUBLIC_URL` (none when it is unset)."""
        if self._links is None:
            self._links = UnsubscribeLinks(self.secrets, self.public_url)
        return self._links

    @cached_property
    def tracking_links(self) -> TrackingLinks | None:
        """Signed pixel and click URLs under `POSTLINE_PUBLIC_URL` (no tracking without it)."""
        return TrackingLinks(self.secrets, self.public_url) if self.public_url else None

    @cached_property
    def raw_links(self) -> RawMessageLinks:
        """Signed, expiring links to raw messages (the email-log detail's `raw_message_url`)."""
        return RawMessageLinks(self.secrets)

    async def stop_background(self) -> None:
        self.domain_checker.stop()
        await self.webhook_sender.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._wakes.clear()
        self.runner_locks.close()  # another process takes over its read models at once
        self._loop = None  # commits made after this must not poke a loop that is gone

    def close(self) -> None:
        # Background work in the pool may still be waiting on the committer: it goes first.
        self._executor.shutdown(wait=True)
        self.committer.stop()
        self.store.close()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking store work on the I/O thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    async def read_your_writes(self, projector: Projector) -> bool:
        """Wait until `projector` has seen everything committed before this call."""
        head = await self.run(self.store.head)
        deadline = time.monotonic() + READ_YOUR_WRITES_TIMEOUT
        while await self.run(projector.position) < head:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def on_queued(self, listener: Callable[[], None], *, remove: bool = False) -> None:
        """Call `listener` on the event loop whenever this process's delivery-queue projector
        has applied events (mail may have fallen due)."""
        if remove:
            self._queued_listeners.remove(listener)
        else:
            self._queued_listeners.append(listener)

    def on_domains_changed(self, listener: Callable[[], None], *, remove: bool = False) -> None:
        """Call `listener` (on the event loop) when this process has checked a sending domain:
        its verification, and so its DKIM key, may have changed."""
        if remove:
            self._domain_listeners.remove(listener)
        else:
            self._domain_listeners.append(listener)

    def domains_changed(self) -> None:
        for listener in list(self._domain_listeners):
            listener()

    def _poke(self) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                for wake in list(self._wakes):
                    loop.call_soon_threadsafe(wake.set)

    async def _follow(
        self, members: list[Projector], group: ProjectorGroup | None, wake: asyncio.Event
    ) -> None:
        """Keep `members` (one process, or a group of read models) up with the log, each
        while this process runs it (see adapters.runner_locks)."""
        names = ", ".join(m.projection.name for m in members)
        standby: dict[str, float] = {}  # read models another process runs: next try
        while True:
            held = await self.run(self._held, members, standby)
            if not held:  # other processes run them; take over if those go away
                await asyncio.sleep(RUNNER_STANDBY_SECONDS)
                continue
            wake.clear()
            try:
                if group is None:
                    consumed = await self.run(held[0].run_once)
                else:
                    consumed = await self.run(group.run_once, held)
            except asyncio.CancelledError:
                raise
            except (PersistenceError, StoreUnavailable) as error:
                log.warning("projection %s paused: store unavailable (%s)", names, error)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("projection %s failed; retrying in 5 s", names)
                await asyncio.sleep(5.0)
                continue
            if consumed and self.queue in held:
                for listener in self._queued_listeners:
                    listener()
            if consumed >= (group or held[0]).batch_size:
                continue
            if consumed:
                await asyncio.sleep(PROJECTION_COALESCE_SECONDS)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), PROJECTION_POLL_SECONDS)

    def _held(self, members: list[Projector], standby: dict[str, float]) -> list[Projector]:
        """The members this process runs now; another process's are tried again only every
        RUNNER_STANDBY_SECONDS."""
        now = time.monotonic()
        held = []
        for member in members:
            name = member.projection.name
            if standby.get(name, 0.0) > now:
                continue
            try:
                runs_here = self.runner_locks.hold(name)
            except Exception:  # (the lock's own connection failing is handled inside)
                log.exception("projection %s: cannot take its runner lock", name)
                runs_here = False
            if runs_here:
                held.append(member)
            else:
                standby[name] = now + RUNNER_STANDBY_SECONDS
        return held
