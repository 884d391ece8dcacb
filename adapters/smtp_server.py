"""The SMTP protocol engine: aiosmtpd, with the replies, limits and extensions a relay needs.

aiosmtpd keeps the protocol machine; this subclass adds what it lacks and leaves policy to the
handler (`handle_MAIL`, `handle_RCPT`, `handle_DATA`, `authenticate`, `handle_CLOSE`):

- ENHANCEDSTATUSCODES and PIPELINING advertised; every reply worded by `domain.smtp_replies`
  (aiosmtpd reads commands one line at a time from a buffered stream, so pipelined commands are
  answered in order; the tests send whole pipelined groups in one write).
- AUTH PLAIN/LOGIN parsed by aiosmtpd, checked by the handler's `authenticate` coroutine, so a
  token lookup can wait on the database without blocking the event loop.
- 421 replies close the connection; an idle client gets `421 4.4.2` before the close; a
  client that keeps making errors is disconnected after `max_errors`.
- Implicit TLS (port 465) is recognised from the transport, so AUTH is offered at once.
"""

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from domain import smtp_replies

log = logging.getLogger("postline.smtp")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    """How one SMTP listener behaves."""

    hostname: str
    implicit_tls: bool = False
    tls_context: ssl.SSLContext | None = None  # STARTTLS (or the implicit TLS) context
    plaintext_auth: bool = False  # offer AUTH before TLS (loopback listeners by default)
    data_size_limit: int = MAX_MESSAGE_BYTES
    timeout: float = 300.0
    max_errors: int = 20


class RelaySession(Session):
    """aiosmtpd's session, plus what the relay tracks per connection."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.tls = False
        self.principal: Any = None  # who may send on this connection (AUTH or trusted network)
        self.credentials: LoginPassword | None = None
        self.messages = 0  # messages accepted on this connection
        self.counted: Any = None  # what the handler counts this connection against


class RelayProtocol(SMTP):
    """One SMTP connection."""

    def __init__(self, handler: Any, settings: ListenerSettings) -> None:
        super().__init__(
            handler,
            data_size_limit=settings.data_size_limit,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            ident="Postline ESMTP",
            tls_context=None if settings.implicit_tls else settings.tls_context,
            timeout=settings.timeout,
            auth_require_tls=not (settings.plaintext_auth or settings.implicit_tls),
        )
        self.settings = settings
        self._greeted = False
        self._verbatim = False  # HELO/EHLO answers (and the greeting) carry no enhanced codes
        self._in_mail = False  # answering MAIL FROM (address errors are the sender's)
        self._errors = 0
        self._closing = False
        self._handle_hooks["EHLO"] = _ehlo_extensions
        self._ehlo_hook_ver = "new"

    def _create_session(self) -> Session:
        return RelaySession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(self.session, RelaySession)
        if transport.get_extra_info("ssl_object") is not None:
            self.session.tls = True  # implicit TLS, or the handshake after STARTTLS

    def connection_lost(self, error: Exception | None) -> None:
        closed = getattr(self.event_handler, "handle_CLOSE", None)
        if closed is not None and self.session is not None:
            closed(self.session)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        if isinstance(status, bytes):  # AUTH challenges
            await super().push(status)
            return
        verbatim = self._verbatim or not self._greeted
        self._greeted = True
        reply = status if verbatim else smtp_replies.worded(status, sender=self._in_mail)
        await super().push(reply)
        if self._closing:
            return
        if reply[:1] == "5":
            self._errors += 1
        if smtp_replies.closes_connection(reply):
            self._close()
        elif self._errors >= self.settings.max_errors:
            self._closing = True
            await super().push(smtp_replies.TOO_MANY_ERRORS)
            self._close()

    def forgive_errors(self) -> None:
        """A message was accepted: the client is not stuck in a loop of mistakes."""
        self._errors = 0

    def _close(self) -> None:
        self._closing = True
        if self.transport is not None:
            self.transport.close()

    async def smtp_HELO(self, hostname: str) -> None:
        self._verbatim = bool(hostname)
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._verbatim = False

    async def smtp_EHLO(self, hostname: str) -> None:
        self._verbatim = bool(hostname)
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._verbatim = False

    async def smtp_MAIL(self, arg: str | None) -> None:
        self._in_mail = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._in_mail = False

    async def smtp_AUTH(self, arg: str) -> None:
        assert isinstance(self.session, RelaySession)
        self.session.credentials = None
        await super().smtp_AUTH(arg)
        credentials = self.session.credentials
        if credentials is None:
            return  # aiosmtpd answered (bad syntax, aborted, unknown mechanism, ...)
        self.session.credentials = None
        reply = await self.event_handler.authenticate(self, self.session, credentials)
        if reply.startswith("235"):
            self.session.authenticated = True
        await self.push(reply)

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        """Keep the decoded credentials; `smtp_AUTH` has the handler check them (async)."""
        assert isinstance(self.session, RelaySession)
        self.session.credentials = auth_data
        return AuthResult(success=False, handled=True)

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self._closing:
            self._closing = True
            reply = smtp_replies.TIMEOUT.format(hostname=self.settings.hostname)
            self.transport.write(reply.encode("ascii") + b"\r\n")
        super()._timeout_cb()


async def _ehlo_extensions(
    server: RelayProtocol, session: Session, envelope: Any, hostname: str, responses: list[str]
) -> list[str]:
    """The EHLO answer, plus the extensions aiosmtpd does not advertise itself."""
    session.host_name = hostname
    return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]


def protocol_factory(handler: Any, settings: ListenerSettings) -> Callable[[], RelayProtocol]:
    def make() -> RelayProtocol:
        return RelayProtocol(handler, settings)

    return make


async def serve_smtp(
    sock: socket.socket, handler: Any, settings: ListenerSettings
) -> asyncio.Server:
    """Serve SMTP on an already bound, listening socket (shared by forked workers)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        protocol_factory(handler, settings),
        sock=sock,
        ssl=settings.tls_context if settings.implicit_tls else None,
    )


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for STARTTLS and implicit TLS: TLS 1.2 or newer, no client certs."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
