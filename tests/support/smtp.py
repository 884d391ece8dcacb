"""The SMTP relay on real loopback sockets, in a background event loop, and client helpers."""

import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from adapters.smtp_server import ListenerSettings, serve_smtp, server_tls_context
from engine.relay import RelayPolicy, SmtpRelay
from engine.runtime import Runtime
from tests.support.loop import BackgroundLoop

HOSTNAME = "relay.test"


@dataclass
class Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost."""

    directory: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        server = self.ca.issue_cert("127.0.0.1", "localhost", HOSTNAME)
        self.cert = self.directory / "smtp-cert.pem"
        self.key = self.directory / "smtp-key.pem"
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context


class LiveSmtp:
    """Listeners of one relay; `.port(n)` is listener n's port; stop with `.stop()`."""

    def __init__(
        self,
        runtime: Runtime,
        certificates: Certificates,
        *listeners: ListenerSettings,
        policy: RelayPolicy | None = None,
    ) -> None:
        self.relay = SmtpRelay(runtime, policy or RelayPolicy())
        self._loop = BackgroundLoop()
        self.settings = listeners or (loopback_settings(certificates),)
        self.sockets = []
        for _ in self.settings:
            sock = socket.create_server(("127.0.0.1", 0))
            self.sockets.append(sock)
        self.servers = [
            self._loop.run(serve_smtp(sock, self.relay, settings))
            for sock, settings in zip(self.sockets, self.settings, strict=True)
        ]

    def port(self, index: int = 0) -> int:
        return int(self.sockets[index].getsockname()[1])

    def stop(self) -> None:
        self._loop.stop(*self.servers)


def loopback_settings(certificates: Certificates, **overrides: object) -> ListenerSettings:
    values: dict[str, object] = {
        "hostname": HOSTNAME,
        "tls_context": server_tls_context(str(certificates.cert), str(certificates.key)),
        "plaintext_auth": True,
    }
    values.update(overrides)
    return ListenerSettings(**values)  # type: ignore[arg-type]


class RawClient:
    """A line-level SMTP client on a plain socket, for what real clients refuse to send."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """One whole reply (multi-line replies joined with newlines); '' when closed."""
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                return "\n".join(lines)
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if len(text) < 4 or text[3] != "-":
                return "\n".join(lines)

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection."""
        try:
            return self.file.readline() == b""
        except OSError:
            return True

    def close(self) -> None:
        self.file.close()
        self.sock.close()
