"""A destination MX host for tests: aiosmtpd on loopback, answering by recipient.

The recipient's local part says what the sink does: `ok...` takes the mail; `greylist...`
answers 451 the first time and takes it the second; `unknown...` 550 5.1.1; `full...` 552
5.2.2; `later...` always 451; `stall...` does not answer for `stall_seconds`. Everything taken
is kept in `.received`. With a TLS context the sink offers STARTTLS.
"""

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, Envelope, Session

from domain.retry import RetrySchedule
from tests.support.loop import BackgroundLoop

# Retries soon after a soft bounce, three attempts in all: runs against the sink end quickly.
FAST_RETRIES = RetrySchedule.from_data(
    {
        "first_retry": "0.2s",
        "factor": 1,
        "max_interval": "1s",
        "jitter": 0,
        "max_attempts": 3,
        "max_age": "1h",
    }
)


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    at: float = field(default_factory=time.monotonic)


@dataclass
class _Script:
    received: list[Received] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    stall_seconds: float = 30.0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.partition("@")[0].lower()
        if local.startswith("unknown"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("full"):
            return "552 5.2.2 Mailbox full"
        if local.startswith("later"):
            return "451 4.3.0 Try again later"
        if local.startswith("stall"):
            await asyncio.sleep(self.stall_seconds)
        if local.startswith("greylist") and address not in self.seen:
            self.seen.add(address)
            return "451 4.7.1 Greylisted, please try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                session.ssl is not None,
            )
        )
        return "250 2.0.0 Ok: queued"


@dataclass
class _PipeliningScript(_Script):
    """The same answers, with PIPELINING offered (aiosmtpd reads commands one line at a time
    from a buffered stream, so a pipelined group is answered in order)."""

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]


class MxSink:
    """The sink on 127.0.0.1, an ephemeral port; `.port`, `.received`; stop with `.stop()`.
    With `pipelining`, it offers PIPELINING (RFC 2920)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
        pipelining: bool = False,
    ) -> None:
        self.script = _PipeliningScript() if pipelining else _Script()
        self._loop = BackgroundLoop()
        sock = socket.create_server((host, port))
        self.port = int(sock.getsockname()[1])

        async def start() -> asyncio.Server:
            loop = asyncio.get_running_loop()
            return await loop.create_server(
                lambda: SMTP(self.script, hostname="mx.sink.test", tls_context=tls), sock=sock
            )

        self.server = self._loop.run(start())

    @property
    def received(self) -> list[Received]:
        return self.script.received

    def stop(self) -> None:
        self._loop.stop(self.server)
