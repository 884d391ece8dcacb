"""Delivering to a remote MX host with aiosmtplib: one connection, reused for many messages.

Opportunistic TLS as Postfix's `smtp_tls_security_level = may`: STARTTLS when the server
offers it, without checking its certificate (MX certificates rarely match, and refusing them
would only push the mail back to plaintext); a server whose TLS handshake fails is tried again
in plaintext. Every failure comes back as a reply, `code` None when there was none (connection
refused, timeout), so the caller classifies all outcomes the same way.
"""

import asyncio
import ssl
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.protocol import normalize_message_line_endings
from aiosmtplib.response import SMTPResponse


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


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _insecure_context()


class MxConnection:
    """An open SMTP session with one MX host."""

    def __init__(
        self, client: aiosmtplib.SMTP, host: str, address: str, command_timeout: float = 600.0
    ) -> None:
        self._client = client
        self.command_timeout = command_timeout
        self.host = host
        self.address = address
        self.deliveries = 0
        self.broken = False
        sock = client.transport.get_extra_info("sockname") if client.transport else None
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

        `timeout` bounds the connection and each command of the greeting; `command_timeout`
        each command of a transaction (RFC 5321 §4.5.3.2 allows 10 minutes after the data).
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
        client = aiosmtplib.SMTP(
            hostname=address, port=port, local_hostname=helo, timeout=timeout, start_tls=False
        )
        try:
            await client.connect()
            await client.ehlo()
        except aiosmtplib.SMTPConnectTimeoutError:
            raise ConnectFailed(Reply(None, f"Connection to {where} timed out")) from None
        except aiosmtplib.SMTPResponseException as error:
            # A refusal at the greeting or EHLO says nothing about the recipient: try the next
            # host, and later (as Postfix's smtp_skip_5xx_greeting does), never bounce for it.
            client.close()
            text = f"{where} refused the session: {error.code} {error.message}"
            raise ConnectFailed(Reply(None, text)) from None
        except aiosmtplib.SMTPTimeoutError:
            client.close()
            raise ConnectFailed(Reply(None, f"Connection to {where} timed out")) from None
        except (aiosmtplib.SMTPException, OSError) as error:
            client.close()
            cause = error.__cause__ or error
            if isinstance(cause, ConnectionRefusedError):
                text = f"Connection refused by {where}"
            elif isinstance(cause, OSError) and cause.strerror:
                text = f"Cannot connect to {where}: {cause.strerror}"
            else:
                text = f"Cannot connect to {where}: {error}"
            raise ConnectFailed(Reply(None, text)) from None
        connection = cls(client, host, address)
        if tls and client.supports_extension("starttls"):
            try:
                await client.starttls(tls_context=_TLS, server_hostname=host)
                await client.ehlo()
            except (aiosmtplib.SMTPException, ssl.SSLError, OSError):
                client.close()
                return await cls._connect(host, address, port, helo, timeout, tls=False)
        return connection

    async def send(self, sender: str, recipients: list[str], data: bytes) -> dict[str, Reply]:
        """One transaction: the reply for each recipient.

        A refused transaction leaves the session usable (RSET), except after 421 (the server
        is closing), a timeout or a broken connection.

        The commands go through aiosmtplib's `execute_command`; the message itself is
        written by `wire_data` and the protocol's `write`, not `SMTP.data`: that one runs
        two regular expressions and three copies over every message to normalise line
        endings that are already canonical here, about a fifth of the MTA's CPU.
        """
        self.deliveries += 1
        client = self._client
        timeout = self.command_timeout
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8 and not client.supports_extension("smtputf8"):
            return dict.fromkeys(
                recipients, Reply(553, "5.6.7 The server does not support SMTPUTF8 addresses")
            )
        payload = wire_data(data)
        options = [b"SMTPUTF8"] if utf8 else []
        if client.supports_extension("size"):
            options.append(b"SIZE=%d" % len(payload))
        replies: dict[str, Reply] = {}
        try:
            reply = await client.execute_command(
                b"MAIL", _path(b"FROM", sender), *options, timeout=timeout
            )
            if reply.code != 250:
                return await self._refused(recipients, reply)
            for recipient in recipients:
                reply = await client.execute_command(
                    b"RCPT", _path(b"TO", recipient), timeout=timeout
                )
                if reply.code == 421:
                    return await self._refused(recipients, reply, replies)
                if reply.code not in (250, 251):
                    replies[recipient] = Reply(reply.code, reply.message)
            accepted = [r for r in recipients if r not in replies]
            if not accepted:
                return await self._refused(recipients, None, replies)
            reply = await client.execute_command(b"DATA", timeout=timeout)
            if reply.code != 354:
                return await self._refused(recipients, reply, replies)
            protocol = client.protocol
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Connection lost")
            protocol.write(payload)
            reply = await protocol.read_response(timeout=timeout)
        except ValueError as error:  # a control character in an address
            self.broken = True  # aiosmtplib refused it mid-transaction: start afresh
            return dict.fromkeys(recipients, Reply(553, f"5.1.3 Bad address: {error}"))
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            self.broken = True
            text = str(error) or type(error).__name__
            if isinstance(error, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError):
                text = f"Timed out talking to {self.host}[{self.address}]"
            return {r: replies.get(r, Reply(None, text)) for r in recipients}
        self.broken = reply.code == 421
        final = Reply(reply.code, reply.message)
        return {r: replies.get(r, final) for r in recipients}

    async def _refused(
        self,
        recipients: list[str],
        reply: SMTPResponse | None,
        replies: dict[str, Reply] | None = None,
    ) -> dict[str, Reply]:
        """The transaction ends before the data: `reply` for every recipient without one."""
        replies = replies or {}
        if reply is not None and reply.code == 421:
            self.broken = True
        else:
            try:
                reset = await self._client.execute_command(b"RSET", timeout=self.command_timeout)
                self.broken = reset.code != 250
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                self.broken = True
        if reply is None:
            return replies
        refusal = Reply(reply.code, reply.message)
        return {r: replies.get(r, refusal) for r in recipients}

    @property
    def usable(self) -> bool:
        """Still open, and not left in a state where another transaction would fail."""
        return not self.broken and self._client.is_connected

    async def close(self) -> None:
        if self.broken:
            self._client.close()
            return
        try:
            await self._client.quit()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self._client.close()


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
