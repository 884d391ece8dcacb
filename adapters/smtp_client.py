"""Delivering to a remote MX host: one SMTP session, reused for many messages, pipelined.

The session is a small asyncio protocol of our own rather than aiosmtplib's client: aiosmtplib
keeps one reply in flight and drops a reply that arrives before it is asked for, so it cannot
pipeline (RFC 2920). Pipelined, a transaction is two writes and two wake-ups (MAIL, every RCPT
and DATA in one write; then the message) instead of four of each; on loopback that halves
the client's CPU per message. aiosmtplib still parses the EHLO extensions and normalises stray
line endings.

- Opportunistic TLS as Postfix's `smtp_tls_security_level = may`: STARTTLS when the server
  offers it, without checking its certificate (MX certificates rarely match, and refusing them
  would only push the mail back to plaintext); a server whose STARTTLS fails is tried again
  in plaintext on a new connection. Anything the server sent after its 220 to STARTTLS is
  discarded, never read as a reply of the encrypted session (RFC 3207 §4.2).
- A server that does not offer PIPELINING gets one command at a time; one that answers EHLO
  with a 5xx gets HELO.
- A pipelining server that accepts DATA after refusing every recipient gets an empty message,
  ended at once (RFC 2920 §3.1): nobody is sent anything.
- Every failure comes back as a reply, `code` None when there was none (connection refused,
  timeout, connection lost), so the caller classifies all outcomes the same way.
"""

import asyncio
import collections
import re
import ssl
from dataclasses import dataclass

from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import normalize_message_line_endings

MAX_REPLY_BYTES = 64 * 1024  # an unfinished reply longer than this ends the session
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never in an address on the wire


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's answer for one recipient (or our account of why there was none)."""

    code: int | None
    message: str

    @property
    def accepted(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


class ConnectFailed(Exception):
    """No connection to any address of the host: `reply` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.message)
        self.reply = reply


class SessionLost(Exception):
    """The connection closed, or the server said something that is not SMTP."""


class SessionTimedOut(SessionLost):
    """The server took longer than the step allows; the connection is dropped."""


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _insecure_context()


class _Replies(asyncio.Protocol):
    """Reads the server's replies, in order, as they come: several may arrive at once."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []  # of a multi-line reply still coming
        self._replies: collections.deque[Reply] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._lost: SessionLost | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in (b"", b" ", b"-"):
                self._fail(SessionLost(f"Not an SMTP reply: {line[:80]!r}"))
                return
            self._lines.append(line)
            if line[3:4] != b"-":
                lines, self._lines = self._lines, []
                text = "\n".join(x[4:].decode("utf-8", "replace").strip() for x in lines)
                self._replies.append(Reply(int(lines[0][:3]), text))
        del buffer[:start]
        if len(buffer) + sum(map(len, self._lines)) > MAX_REPLY_BYTES:
            self._fail(SessionLost("The server's reply is too long"))
            return
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        lost = SessionLost(f"Connection lost: {exc}" if exc else "Connection closed by the server")
        self._lost = self._lost or lost
        self.transport = None
        self._wake()

    def arm(self, seconds: float) -> None:
        """Drop the connection unless `disarm` comes within `seconds`: one timer per step,
        where a timeout around every read would cost more than the read itself."""
        self.disarm()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(seconds, self._fail, SessionTimedOut("Timed out"))

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: SessionLost) -> None:
        self._lost = error
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def _unread(self) -> bool:
        return bool(self._replies or self._lines or self._buffer)

    @property
    def pending(self) -> bool:
        """Whether the server said something nobody asked for (or closed): a session where
        the next reply read would not be the next command's."""
        return self._lost is not None or self._unread

    def discard(self) -> bool:
        """Drop whatever was received and not yet read; whether there was anything."""
        had = self._unread
        self._buffer.clear()
        self._lines.clear()
        self._replies.clear()
        return had

    async def read(self) -> Reply:
        """The next reply (callers bound the wait with a timeout)."""
        while not self._replies:
            if self._lost is not None:
                raise self._lost
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._replies.popleft()


class MxConnection:
    """An open SMTP session with one MX host."""

    def __init__(
        self, transport: asyncio.Transport, replies: _Replies, host: str, address: str
    ) -> None:
        self._transport = transport
        self._replies = replies
        self.host = host
        self.address = address
        self.command_timeout = 600.0
        self.extensions: dict[str, str] = {}
        self.deliveries = 0
        self.broken = False
        sock = transport.get_extra_info("sockname")
        self.sending_ip: str | None = sock[0] if sock else None

    @classmethod
    async def open(
        cls,
        host: str,
        addresses: tuple[str, ...],
        *,
        port: int,
        helo: str,
        timeout: float,
        command_timeout: float = 600.0,
        tls: bool = True,
    ) -> "MxConnection":
        """Connect to the first address of `host` that answers; ConnectFailed otherwise.

        `timeout` bounds the connection, and then the greeting, EHLO and STARTTLS together
        (a TLS handshake that stalls fails the connection); `command_timeout` each of the two
        steps of a transaction, the envelope and the message (RFC 5321 §4.5.3.2 allows 10
        minutes after the data).
        """
        last = Reply(None, f"No address to connect to for {host}")
        for address in addresses:
            try:
                connection = await cls._connect(host, address, port, helo, timeout, tls)
                connection.command_timeout = command_timeout
                return connection
            except ConnectFailed as failure:
                last = failure.reply
        raise ConnectFailed(last)

    @classmethod
    async def _connect(
        cls, host: str, address: str, port: int, helo: str, timeout: float, tls: bool
    ) -> "MxConnection":
        where = f"{host}[{address}]:{port}"
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, replies = await loop.create_connection(_Replies, address, port)
        except TimeoutError:
            raise ConnectFailed(Reply(None, f"Connection to {where} timed out")) from None
        except ConnectionRefusedError:
            raise ConnectFailed(Reply(None, f"Connection refused by {where}")) from None
        except OSError as error:
            text = f"Cannot connect to {where}: {error.strerror or error}"
            raise ConnectFailed(Reply(None, text)) from None
        connection = cls(transport, replies, host, address)
        try:
            async with asyncio.timeout(timeout):
                greeting = await replies.read()
                if greeting.code != 220:
                    raise _Refused(greeting)
                await connection._hello(helo)
                if not (tls and "starttls" in connection.extensions):
                    return connection
                try:
                    await connection._starttls(host)
                    await connection._hello(helo)
                    return connection
                except (_Refused, SessionLost, ssl.SSLError, OSError):
                    pass  # plaintext, on a new connection
        except _Refused as refused:
            # A refusal at the greeting or EHLO says nothing about the recipient: try the next
            # host, and later (as Postfix's smtp_skip_5xx_greeting does), never bounce for it.
            connection.abort()
            text = f"{where} refused the session: {refused.reply.code} {refused.reply.message}"
            raise ConnectFailed(Reply(None, text)) from None
        except TimeoutError:
            connection.abort()
            raise ConnectFailed(Reply(None, f"Connection to {where} timed out")) from None
        except (SessionLost, OSError) as error:
            connection.abort()
            raise ConnectFailed(Reply(None, f"Cannot connect to {where}: {error}")) from None
        except asyncio.CancelledError:
            connection.abort()
            raise
        connection.abort()
        return await cls._connect(host, address, port, helo, timeout, tls=False)

    async def _command(self, command: bytes) -> Reply:
        self._transport.write(command + b"\r\n")
        return await self._replies.read()

    async def _hello(self, helo: str) -> None:
        reply = await self._command(b"EHLO " + helo.encode("idna"))
        if reply.code == 250:
            self.extensions = parse_esmtp_extensions(reply.message)[0]
            return
        if reply.code is not None and reply.code >= 500:  # no ESMTP: plain HELO
            reply = await self._command(b"HELO " + helo.encode("idna"))
            if reply.code == 250:
                self.extensions = {}
                return
        raise _Refused(reply)

    async def _starttls(self, host: str) -> None:
        reply = await self._command(b"STARTTLS")
        if reply.code != 220:
            raise _Refused(reply)
        if self._replies.discard():  # sent before the handshake: not from the server we want
            raise SessionLost("Data after the STARTTLS reply")
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self._transport, self._replies, _TLS, server_hostname=host)
        if transport is None:
            raise SessionLost("TLS could not be started")
        self._transport = transport

    async def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Reply]:
        """One transaction: the reply for each recipient.

        A refused transaction leaves the session usable (RSET), except after 421 (the server
        is closing), a timeout or a broken connection. An address the server could not be
        sent (SMTPUTF8 it does not offer, a control character) is refused here.
        """
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8 and "smtputf8" not in self.extensions:
            return dict.fromkeys(
                recipients, Reply(553, "5.6.7 The server does not support SMTPUTF8 addresses")
            )
        if _CONTROL.search(sender):  # it would end the command early: never sent
            return dict.fromkeys(recipients, Reply(553, f"5.1.7 Bad sender address: {sender!r}"))
        refused = {
            r: Reply(553, f"5.1.3 Bad recipient address: {r!r}")
            for r in recipients
            if _CONTROL.search(r)
        }
        targets = [r for r in recipients if r not in refused]
        if not targets:
            return refused
        self.deliveries += 1
        try:
            return {**await self._transaction(sender, targets, data, utf8), **refused}
        except asyncio.CancelledError:
            self.broken = True  # cut off mid-transaction: the session is in no known state
            raise

    async def _transaction(
        self, sender: str, recipients: list[str], data: bytes, utf8: bool
    ) -> dict[str, Reply]:
        payload = wire_data(data)
        mail = b"MAIL " + _path(b"FROM", sender)
        if utf8:
            mail += b" SMTPUTF8"
        if "size" in self.extensions:
            mail += b" SIZE=%d" % len(payload)
        rcpts = [b"RCPT " + _path(b"TO", r) for r in recipients]
        replies: dict[str, Reply] = {}
        timer = self._replies
        try:
            timer.arm(self.command_timeout)
            if "pipelining" in self.extensions:
                first, answers, data_reply = await self._pipelined(mail, rcpts)
            else:
                first, answers, data_reply = await self._one_by_one(mail, rcpts)
            if first.code != 250:
                return await self._refused(recipients, first, replies, data_reply)
            for recipient, reply in zip(recipients, answers, strict=False):
                if reply.code == 421:
                    return await self._refused(recipients, reply, replies, data_reply)
                if reply.code not in (250, 251):
                    replies[recipient] = reply
            accepted = [r for r in recipients if r not in replies]
            if not accepted or data_reply is None or data_reply.code != 354:
                return await self._refused(recipients, data_reply, replies, data_reply)
            timer.arm(self.command_timeout)
            self._transport.write(payload)
            final = await self._replies.read()
        except (SessionLost, OSError) as error:
            self.broken = True
            text = str(error) or type(error).__name__
            if isinstance(error, SessionTimedOut):
                text = f"Timed out talking to {self.host}[{self.address}]"
            return {r: replies.get(r, Reply(None, text)) for r in recipients}
        finally:
            timer.disarm()
        self.broken = final.code == 421
        return {r: replies.get(r, final) for r in recipients}

    async def _pipelined(
        self, mail: bytes, rcpts: list[bytes]
    ) -> tuple[Reply, list[Reply], Reply | None]:
        """MAIL, every RCPT and DATA in one write; their replies, in order (RFC 2920)."""
        self._transport.write(b"\r\n".join([mail, *rcpts, b"DATA"]) + b"\r\n")
        read = self._replies.read
        first = await read()
        if first.code == 421:
            return first, [], None  # the server is closing: nothing more will come
        answers = []
        for _ in rcpts:
            answers.append(reply := await read())
            if reply.code == 421:
                return first, answers, None
        return first, answers, await read()

    async def _one_by_one(
        self, mail: bytes, rcpts: list[bytes]
    ) -> tuple[Reply, list[Reply], Reply | None]:
        """The envelope a command at a time, stopping at the first reply that ends it."""
        first = await self._command(mail)
        if first.code != 250:
            return first, [], None
        answers = []
        for rcpt in rcpts:
            answers.append(reply := await self._command(rcpt))
            if reply.code == 421:
                return first, answers, None
        if not any(reply.code in (250, 251) for reply in answers):
            return first, answers, None
        return first, answers, await self._command(b"DATA")

    async def _refused(
        self,
        recipients: list[str],
        reply: Reply | None,
        replies: dict[str, Reply],
        data_reply: Reply | None,
    ) -> dict[str, Reply]:
        """The transaction ends before the message: `reply` for every recipient without one.

        A server that said 354 anyway (pipelined, every recipient refused) gets an empty
        message ended at once; otherwise RSET, unless the server is closing (421).
        """
        if reply is not None and reply.code == 421:  # (a 421 to a recipient comes as `reply`)
            self.broken = True
        else:
            self._replies.arm(self.command_timeout)
            try:
                if data_reply is not None and data_reply.code == 354:
                    ended = await self._command(b".")  # an empty message, to nobody
                    self.broken = ended.code == 421
                else:
                    reset = await self._command(b"RSET")
                    self.broken = reset.code != 250
            except (SessionLost, OSError):
                self.broken = True
            finally:
                self._replies.disarm()
        if reply is None or reply.code == 354:  # (every recipient refused already, normally)
            reply = Reply(None, f"{self.host}[{self.address}] ended the transaction out of turn")
        return {r: replies.get(r, reply) for r in recipients}

    @property
    def usable(self) -> bool:
        """Still open, and not left in a state where another transaction would fail."""
        return not (self.broken or self._transport.is_closing() or self._replies.pending)

    def abort(self) -> None:
        self.broken = True
        self._transport.abort()

    async def close(self) -> None:
        """QUIT politely when the session is in order; drop it otherwise."""
        if self.broken or self._transport.is_closing():
            self.abort()
            return
        try:
            async with asyncio.timeout(min(self.command_timeout, 30.0)):
                await self._command(b"QUIT")
        except (TimeoutError, SessionLost, OSError):
            pass
        self._transport.close()


class _Refused(Exception):
    """The server refused the session (greeting, EHLO/HELO or STARTTLS)."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.message)
        self.reply = reply


def _path(keyword: bytes, address: str) -> bytes:
    """`FROM:<address>` / `TO:<address>` (UTF-8 where SMTPUTF8 was negotiated)."""
    return keyword + b":<" + address.encode() + b">"


def wire_data(data: bytes) -> bytes:
    """The message as it goes after DATA: CRLF line endings, dot-stuffed, with the final dot.

    Messages are stored with canonical CRLF line endings, so the check is three scans in C;
    anything else is normalised by aiosmtplib's own function.
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalize_message_line_endings(data)
    elif data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return data + b".\r\n"
