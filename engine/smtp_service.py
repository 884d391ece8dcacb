"""The SMTP relay as a service: its listeners, their TLS, and starting them on a loop."""

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.smtp_server import ListenerSettings, serve_smtp, server_tls_context
from adapters.tls import ensure_self_signed
from engine.relay import RelayPolicy, SmtpRelay
from engine.runtime import Runtime

log = logging.getLogger("postline.smtp")


@dataclass(frozen=True, slots=True)
class Listener:
    """One SMTP port: where, and how TLS works on it."""

    host: str
    port: int
    implicit_tls: bool

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Everything the relay needs to run, the same in every worker process."""

    listeners: tuple[Listener, ...]
    hostname: str
    tls_cert: str
    tls_key: str
    plaintext_auth: str  # loopback | always | never
    timeout: float
    policy: RelayPolicy

    def plaintext_auth_on(self, listener: Listener) -> bool:
        """Whether AUTH is offered before STARTTLS on `listener`."""
        return self.plaintext_auth == "always" or (
            self.plaintext_auth == "loopback" and listener.loopback
        )

    def settings(self, listener: Listener) -> ListenerSettings:
        """The protocol settings of one listener (builds its TLS context: call per process)."""
        return ListenerSettings(
            hostname=self.hostname,
            implicit_tls=listener.implicit_tls,
            tls_context=server_tls_context(self.tls_cert, self.tls_key),
            plaintext_auth=self.plaintext_auth_on(listener),
            timeout=self.timeout,
        )

    def with_ports(self, ports: list[int]) -> "SmtpConfig":
        """The config with the ports actually bound (port 0 picks a free one)."""
        listeners = tuple(
            replace(listener, port=port)
            for listener, port in zip(self.listeners, ports, strict=True)
        )
        return replace(self, listeners=listeners)


def default_certificate(data_dir: Path, hostname: str) -> tuple[str, str]:
    """The self-signed certificate in the data folder, generated (and said so) on first run."""
    cert, key, created = ensure_self_signed(data_dir, hostname)
    if created:
        log.warning(
            "no certificate given for SMTP: generated a self-signed one for %s in %s "
            "(use --smtp-tls-cert/--smtp-tls-key for a real one)",
            hostname,
            cert,
        )
    return str(cert), str(key)


async def start_smtp(
    runtime: Runtime, config: SmtpConfig, sockets: list[socket.socket]
) -> list[asyncio.Server]:
    """Serve the relay on already bound sockets (one per listener) on the running loop."""
    relay = SmtpRelay(runtime, config.policy)
    servers = []
    for listener, sock in zip(config.listeners, sockets, strict=True):
        servers.append(await serve_smtp(sock, relay, config.settings(listener)))
    return servers
