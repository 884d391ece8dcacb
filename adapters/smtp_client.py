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

        A refused transaction leaves the session usable (aiosmtplib sends RSET), except after
        421 (the server is closing) or a broken connection.
        """
        self.deliveries += 1
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        options = ["SMTPUTF8"] if utf8 else []
        try:
            refused, response = await self._client.sendmail(
                sender, recipients, data, mail_options=options, timeout=self.command_timeout
            )
        except aiosmtplib.SMTPNotSupported:
            reply = Reply(553, "5.6.7 The server does not support SMTPUTF8 addresses")
            return dict.fromkeys(recipients, reply)
        except ValueError as error:  # an address aiosmtplib will not put on the wire
            return dict.fromkeys(recipients, Reply(553, f"5.1.3 Bad address: {error}"))
        except aiosmtplib.SMTPRecipientsRefused as error:
            self.broken = any(r.code == 421 for r in error.recipients)
            return {r.recipient: Reply(r.code, r.message) for r in error.recipients}
        except aiosmtplib.SMTPResponseException as error:  # MAIL FROM or DATA refused
            self.broken = error.code == 421
            return dict.fromkeys(recipients, Reply(error.code, error.message))
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            self.broken = True
            text = str(error) or type(error).__name__
            if isinstance(error, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError):
                text = f"Timed out talking to {self.host}[{self.address}]"
            return dict.fromkeys(recipients, Reply(None, text))
        accepted = Reply(250, response)
        return {
            r: Reply(refused[r].code, refused[r].message) if r in refused else accepted
            for r in recipients
        }

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
