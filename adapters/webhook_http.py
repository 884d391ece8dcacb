"""Posting webhook batches over HTTP (httpx), to destinations that are allowed.

A webhook's URL is the account's to choose, so it must not reach into the network Postline
runs in: unless the operator allows it (`POSTLINE_WEBHOOK_ALLOW_PRIVATE`, for tests and local
use), destinations are ports 80 and 443 of public addresses only. The host is resolved and
every address checked before each post (a name can change what it points at).
"""

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

USER_AGENT = "Postline-Webhooks/0.1"
ERROR_BYTES = 500
PUBLIC_PORTS = (80, 443)


class DestinationRefused(ValueError):
    """A destination a webhook may not post to; the message says why."""


@dataclass(frozen=True, slots=True)
class Posted:
    status_code: int | None  # None: no answer (timeout, refused, refused destination)
    latency_ms: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def check_url(url: str, allow_private: bool) -> None:
    """DestinationRefused for what can be told from the URL alone (port, literal address)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not allow_private and port not in PUBLIC_PORTS:
        raise DestinationRefused("url must use port 80 or 443")
    host = (parts.hostname or "").rstrip(".").lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise DestinationRefused("url must not point at this machine")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return
    if not allow_private and not address.is_global:
        raise DestinationRefused("url must not point at a private, loopback or link-local address")


async def check_destination(url: str, allow_private: bool) -> None:
    """As `check_url`, and every address the host resolves to must be public."""
    check_url(url, allow_private)
    if allow_private:
        return
    parts = urlsplit(url)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or 443, type=socket.SOCK_STREAM
        )
    except OSError as error:
        raise DestinationRefused(f"{parts.hostname} does not resolve: {error}") from None
    for *_, sockaddr in found:
        if not ipaddress.ip_address(sockaddr[0]).is_global:
            raise DestinationRefused(f"{parts.hostname} resolves to a non-public address")


async def _start_of(answer: httpx.Response) -> bytes:
    start = b""
    async for chunk in answer.aiter_bytes():
        start += chunk
        if len(start) >= ERROR_BYTES:
            break
    return start[:ERROR_BYTES]


class WebhookClient:
    """One HTTP client (connection pool) for all webhook posts of a process."""

    def __init__(self, timeout: float, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, headers={"User-Agent": USER_AGENT}
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Posted:
        """Post `body`; what came back (never raises for the receiver's failures)."""
        started = time.monotonic()
        try:
            # The whole exchange within the timeout (httpx's applies to each read alone, so a
            # receiver trickling bytes would hold the webhook forever); of the answer's body,
            # only the start is read (what a person needs to see in the delivery log).
            async with asyncio.timeout(self.timeout):
                await check_destination(url, self.allow_private)
                async with self._client.stream(
                    "POST", url, content=body, headers=headers
                ) as answer:
                    status, error = answer.status_code, None
                    if not 200 <= status < 300:
                        error = (await _start_of(answer)).decode("utf-8", "replace")
        except DestinationRefused as error:
            return Posted(None, 0, str(error))
        except TimeoutError:
            elapsed = int((time.monotonic() - started) * 1000)
            return Posted(None, elapsed, f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as error:
            elapsed = int((time.monotonic() - started) * 1000)
            return Posted(None, elapsed, f"{type(error).__name__}: {error}"[:ERROR_BYTES])
        return Posted(status, int((time.monotonic() - started) * 1000), error)

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    async def close(self) -> None:
        await self._client.aclose()
