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
- DATA is read in blocks rather than line by line (see `_read_data`): the size limit holds
  while reading, and a 5 KB message costs a few microseconds instead of seventy line reads.
"""

import asyncio
import inspect
import logging
import re
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, Session, _AuthMechAttr

from domain import smtp_replies

log = logging.getLogger("postline.smtp")

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_LINE_BYTES = 1001  # RFC 5321 4.5.3.1.6: 998 octets, CRLF, and a transparent dot
END_OF_DATA = b"\r\n.\r\n"


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


class _Tables:
    """The command, AUTH-mechanism and hook tables of a protocol class and handler.

    aiosmtpd builds them in `SMTP.__init__` with `inspect.getmembers()` and `dir()` on every
    new connection, which was a quarter of the CPU of a one-message connection; here they are
    built once per listener, and each connection only binds its own methods.
    """

    def __init__(self, protocol: type["RelayProtocol"], handler: Any) -> None:
        self.commands = [(name[5:], name) for name in dir(protocol) if name.startswith("smtp_")]
        self.builtin_auth = [
            (getattr(method, "__auth_mechanism_name__", name[5:].replace("__", "-")), name)
            for name, method in inspect.getmembers(protocol)
            if name.startswith("auth_")
        ]
        self.handler_auth = {
            getattr(method, "__auth_mechanism_name__", name[5:].replace("__", "-")): (
                _AuthMechAttr(method, False)
            )
            for name, method in inspect.getmembers(handler)
            if name.startswith("auth_")
        }
        self.hooks = {
            name[7:]: getattr(handler, name) for name in dir(handler) if name.startswith("handle_")
        }
        self.hooks["EHLO"] = _ehlo_extensions


# `<local@domain>`, possibly followed by parameters: the form nearly every client sends.
_PLAIN_PATH = re.compile(r"\s*<([^<>()\[\]\\,;:\s\"@]+@[^<>()\[\]\\,;:\s\"@]+)>\s*(.*)", re.S)


class RelayProtocol(SMTP):
    """One SMTP connection."""

    def __init__(self, handler: Any, settings: ListenerSettings, tables: _Tables) -> None:
        # The state SMTP.__init__ (aiosmtpd 1.4.6) sets up, minus its per-connection scans
        # (see _Tables); tests/unit/test_smtp_protocol.py checks the two stay in step.
        loop = asyncio.get_running_loop()
        self.__ident__ = "Postline ESMTP"
        self.loop = loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        self.event_handler = handler
        self.data_size_limit = settings.data_size_limit
        self.enable_SMTPUTF8 = True
        self._decode_data = False
        self.command_size_limits.clear()
        self.hostname = settings.hostname
        self.tls_context = None if settings.implicit_tls else settings.tls_context
        self.require_starttls = False
        self._timeout_duration = settings.timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = not (settings.plaintext_auth or settings.implicit_tls)
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = None
        self._auth_required = False
        self._auth_methods = {
            mechanism: _AuthMechAttr(getattr(self, name), True)
            for mechanism, name in tables.builtin_auth
        }
        self._auth_methods.update(tables.handler_auth)
        self._handle_hooks = tables.hooks
        self._ehlo_hook_ver = "new"
        self._smtp_methods = {command: getattr(self, name) for command, name in tables.commands}
        self._enforce_call_limit = False

        self.settings = settings
        self._greeted = False
        self._verbatim = False  # HELO/EHLO answers (and the greeting) carry no enhanced codes
        self._in_mail = False  # answering MAIL FROM (address errors are the sender's)
        self._errors = 0
        self._closing = False
        self._lines: list[str] = []  # multi-line reply being built

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a fast path for plain `<local@domain>` paths."""
        match = _PLAIN_PATH.match(arg)
        if match is not None:
            return match.group(1), match.group(2)
        return super()._getaddr(arg)

    def _create_session(self) -> Session:
        return RelaySession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        before = self.session
        super().connection_made(transport)
        assert isinstance(self.session, RelaySession)
        if before is not None and before is not self.session:
            # STARTTLS starts the session over (RFC 3207 §4.2): what the old one held (an
            # authenticated connection counted against its account) is let go.
            closed = getattr(self.event_handler, "handle_CLOSE", None)
            if closed is not None:
                closed(before)
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
        if reply[3:4] == "-":  # a line of a multi-line reply (EHLO): goes out with the last one
            self._lines.append(reply)
            return
        if self._lines:
            self._lines.append(reply)
            await super().push("\r\n".join(self._lines))
            self._lines.clear()
        else:
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

    async def smtp_DATA(self, arg: str) -> None:
        """DATA as aiosmtpd answers it, with the content read by `_read_data`."""
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content, problem = await self._read_data()
        if problem is not None:
            self._set_post_data_state()
            await self.push(problem)
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self) -> tuple[bytes, str | None]:
        """The message up to `<CRLF>.<CRLF>`, dot-unstuffed; or why it is refused.

        Reads whatever has arrived, in blocks, and looks for the end marker; what follows it
        (pipelined commands) goes back to the reader. Only `<CRLF>` ends a line, as in
        aiosmtpd, so `<LF>.<LF>` never ends DATA. An oversized message is read to its end and
        dropped as it comes, so memory stays bounded; the client then gets 552 (RFC 5321
        4.2.5 asks for the whole message to be read first).
        """
        reader = self._reader
        limit = self.data_size_limit or 0
        marker = len(END_OF_DATA)
        buffer = bytearray(b"\r\n")  # so that a message made of "." alone is found too
        scanned = 0
        oversized = False
        while True:
            end = buffer.find(END_OF_DATA, max(0, scanned - marker))
            if end >= 0:
                break
            scanned = len(buffer)
            # Without its end marker, the buffer holds the 2 bytes added above, the message,
            # and at most 4 bytes of the marker: beyond that, the message is too big for sure.
            if limit and (oversized or len(buffer) > limit + 2 + marker - 1):
                oversized = True
                del buffer[:-marker]  # keep what may be the start of the end marker
                scanned = len(buffer)
            # Take everything that has arrived, so that what follows the end marker can go
            # back to the (then empty) reader in the order it came.
            block = await reader.read(1 << 30)
            if not block:  # the client went away; aiosmtpd cancels this session
                raise ConnectionResetError("connection closed during DATA")
            self._reset_timeout()
            buffer += block
        rest = bytes(buffer[end + marker :])
        if rest and not reader.at_eof():
            reader.feed_data(rest)  # the reader is empty: this puts it back at the front
        # `end` is the message's size with its last CRLF (it counts the 2 bytes added above)
        if oversized or (limit and end > limit):
            return b"", smtp_replies.SIZE_EXCEEDED
        raw = bytes(buffer[2 : end + 2])
        if max(map(len, raw.split(b"\n")), default=0) > MAX_LINE_BYTES - 1:
            return b"", "500 Line too long (see RFC5321 4.5.3.1.6)"
        if raw.startswith(b"."):
            raw = raw[1:]
        return raw.replace(b"\r\n.", b"\r\n"), None

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
    tables = _Tables(RelayProtocol, handler)

    def make() -> RelayProtocol:
        return RelayProtocol(handler, settings, tables)

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
