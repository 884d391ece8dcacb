"""Sending webhook batches: every interval, each webhook's waiting events, 500 at a time.

A batch is `{"events": [...]}` (`application/json`) or one event per line
(`application/jsonl`), signed in `Mailtrap-Signature` (hex HMAC-SHA256 of the body with the
webhook's secret). A 2xx takes the events out of the outbox; anything else, or no answer within
the timeout, is tried again on the webhook retry schedule, and a webhook still failing at its
end is paused (an event, so the audit log tells the owner). One sender at a time posts for a
webhook (a lease in the database), so batches stay in order across processes.
"""

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from adapters.webhook_http import Posted, WebhookClient
from domain.retry import RetrySchedule
from engine import policy
from engine.webhooks import NoSuchWebhook, get_webhook, pause_webhook
from projections.times import stored_time
from projections.webhook_outbox import Subscription, batch, claim, due, settle

if TYPE_CHECKING:  # the runtime makes the sender
    from engine.runtime import Runtime

log = logging.getLogger("postline.webhooks")

SIGNATURE_HEADER = "Mailtrap-Signature"
CONTENT_TYPES = {"json": "application/json", "jsonlines": "application/jsonl"}


@dataclass(frozen=True, slots=True)
class SenderSettings:
    interval: float = 30.0  # seconds between flushes (POSTLINE_WEBHOOK_INTERVAL, at least 1)
    timeout: float = 30.0
    batch_size: int = 500
    allow_private: bool = False  # POSTLINE_WEBHOOK_ALLOW_PRIVATE: loopback, private, any port

    @classmethod
    def from_env(cls) -> "SenderSettings":
        interval = float(os.environ.get("POSTLINE_WEBHOOK_INTERVAL", "30"))
        if interval < 1:
            raise ValueError("POSTLINE_WEBHOOK_INTERVAL must be at least 1 (second)")
        allow = os.environ.get("POSTLINE_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes")
        return cls(interval=interval, allow_private=allow)


def body_of(payloads: list[str], payload_format: str) -> bytes:
    """A batch's body from its events' JSON texts."""
    if payload_format == "jsonlines":
        return ("\n".join(payloads) + "\n").encode()
    return ('{"events":[' + ",".join(payloads) + "]}").encode()


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_batch(
    payloads: list[str], payload_format: str, secret: str
) -> tuple[bytes, dict[str, str]]:
    """A batch's body and headers (content type, signature) from its events' JSON texts."""
    body = body_of(payloads, payload_format)
    headers = {
        "Content-Type": CONTENT_TYPES[payload_format],
        SIGNATURE_HEADER: signature(secret, body),
    }
    return body, headers


class WebhookSender:
    """Flushes every webhook's outbox (see the module docstring)."""

    def __init__(
        self,
        runtime: "Runtime",
        settings: SenderSettings | None = None,
        schedule: RetrySchedule | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.runtime = runtime
        self.settings = settings or SenderSettings.from_env()
        self.schedule = schedule or policy.webhook_retry_schedule()
        self.clock = clock
        self.name = f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.client = WebhookClient(self.settings.timeout, self.settings.allow_private)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self.client.closed:  # stopped before: a new pool for this run
            self.client = WebhookClient(self.settings.timeout, self.settings.allow_private)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            await self.client.close()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.flush()
            except Exception as error:  # the store is down: the next round tries again
                log.warning("webhook round failed: %s", error)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval)

    async def flush(self) -> int:
        """Send what every due webhook has waiting; returns the batches sent successfully."""
        await self.runtime.read_your_writes(self.runtime.webhook_outbox)
        subs = await self.runtime.run(due, self.runtime.store.db, self.clock())
        results = await asyncio.gather(*(self._drain(sub) for sub in subs))
        return sum(results)

    async def _drain(self, sub: Subscription) -> int:
        """Send the webhook's batches until it has none or one fails."""
        sent = 0
        while await self._send_one(sub):
            sent += 1
        return sent

    async def _send_one(self, sub: Subscription) -> bool:
        db, now = self.runtime.store.db, self.clock()
        lease = now + timedelta(seconds=self.settings.timeout * 2 + 30)
        if not await self.runtime.run(claim, db, sub.webhook_id, self.name, now, lease):
            return False
        state, rows = await self.runtime.run(batch, db, sub.webhook_id, self.settings.batch_size)
        try:  # its URL and secret as they are now (a new secret is in force at once)
            webhook = await self.runtime.run(
                get_webhook, self.runtime.store, sub.account_id, sub.webhook_id
            )
        except NoSuchWebhook:
            rows = []
        if not rows or not webhook.settings["active"]:
            await self.runtime.run(settle, db, sub.webhook_id, None, [], None)
            return False
        body, headers = signed_batch(
            [payload for _, payload in rows],
            webhook.settings["payload_format"],
            self.runtime.secrets.open(webhook.sealed_secret).decode(),
        )
        posted = await self.client.post(webhook.settings["url"], body, headers)
        attempt = _attempt(sub.webhook_id, self.clock(), posted, len(rows))
        if posted.ok:
            sent = [position for position, _ in rows]
            await self.runtime.run(settle, db, sub.webhook_id, attempt, sent, None)
            return len(rows) == self.settings.batch_size  # a full batch: there may be more
        failures = state.failures + 1
        first = state.first_failure_at or now
        next_at = self.schedule.next_attempt(failures, first, self.clock(), random.random())
        await self.runtime.run(
            settle, db, sub.webhook_id, attempt, None, (failures, first, next_at)
        )
        log.warning(
            "webhook %s: %s (failure %d)",
            sub.webhook_id,
            posted.error or posted.status_code,
            failures,
        )
        if next_at is None:
            await self._pause(sub, failures, first)
        return False

    async def _pause(self, sub: Subscription, failures: int, first: datetime) -> None:
        reason = f"{failures} deliveries failed since {stored_time(first)[:19]}Z"
        try:
            await self.runtime.run(
                pause_webhook, self.runtime.store, sub.account_id, sub.webhook_id, reason
            )
        except NoSuchWebhook:  # deleted meanwhile
            return
        log.warning("webhook %s paused: %s", sub.webhook_id, reason)


def _attempt(webhook_id: int, at: datetime, posted: Posted, events: int) -> tuple[object, ...]:
    return (
        uuid.uuid4().hex,
        webhook_id,
        stored_time(at),
        posted.status_code,
        posted.latency_ms,
        events,
        posted.error,
    )
