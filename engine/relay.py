"""The SMTP relay's policy: who may send, how much, and what a 250 promises.

One handler serves every connection of a listener; what is per connection lives on the
session. Each hook returns the reply (see `domain.smtp_replies`); the protocol engine in
`adapters.smtp_server` does the rest. Nobody relays without a principal: an API token given
with AUTH (username `api`), or the one token a trusted network is bound to. Never an open relay.
"""

import ipaddress
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import Envelope, LoginPassword

from adapters.smtp_server import RelayProtocol, RelaySession
from domain import smtp_replies as replies
from domain.addresses import is_valid_address
from domain.rfc5322 import has_bare_newline
from engine.accept import Origin, RawSubmission
from engine.accounts import Principal
from engine.errors import Conflict, StoreUnavailable
from engine.runtime import Runtime
from engine.sender_policy import HeaderFromMismatch, SenderNotAllowed

log = logging.getLogger("postline.smtp")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SMTP_USERNAME = b"api"


@dataclass(frozen=True, slots=True)
class RelayPolicy:
    """Limits and trust for one SMTP listener (Mailtrap's limits by default)."""

    stream: str = "transactional"
    max_messages_per_connection: int = 100  # 0: no limit
    max_connections_per_account: int = 10  # 0: no limit
    max_recipients: int = 1000
    trusted_networks: tuple[Network, ...] = ()
    trusted_token_id: int | None = None


class SmtpRelay:
    """aiosmtpd handler: authenticate, check the envelope, accept into the event store."""

    def __init__(self, runtime: Runtime, policy: RelayPolicy) -> None:
        if policy.trusted_networks and policy.trusted_token_id is None:
            raise ValueError("trusted networks need a token to send as")
        self._runtime = runtime
        self._policy = policy
        self._connections: Counter[int] = Counter()  # authenticated connections per account
        self._trusted_ips: dict[str, bool] = {}  # client address -> in a trusted network

    async def authenticate(
        self, server: RelayProtocol, session: RelaySession, credentials: LoginPassword
    ) -> str:
        """Check AUTH PLAIN/LOGIN credentials: username `api`, password an API token."""
        if credentials.login != SMTP_USERNAME:
            return replies.AUTH_BAD_USERNAME
        token = credentials.password.decode("utf-8", "replace").strip()
        auth = self._runtime.auth
        try:
            principal = auth.cached(token) or await self._runtime.run(auth.authenticate, token)
        except StoreUnavailable:
            return "454 4.7.0 Temporary authentication failure: try again later"
        if principal is None:
            log.info("AUTH refused for %s: unknown or revoked token", _ip(session))
            return replies.AUTH_INVALID
        limit = self._policy.max_connections_per_account
        if limit and self._connections[principal.account_id] >= limit:
            return replies.TOO_MANY_CONNECTIONS
        self._connections[principal.account_id] += 1
        session.counted = principal.account_id
        session.principal = principal
        return replies.AUTH_OK

    def handle_CLOSE(self, session: RelaySession) -> None:
        if session.counted is not None:
            self._connections[session.counted] -= 1
            if self._connections[session.counted] <= 0:
                del self._connections[session.counted]
            session.counted = None

    async def handle_MAIL(
        self,
        server: RelayProtocol,
        session: RelaySession,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if session.principal is None:
            try:
                trusted = await self._trusted(session)
            except StoreUnavailable:
                return replies.STORE_UNAVAILABLE
            if trusted is None:
                return replies.AUTH_REQUIRED
            session.principal = trusted
        limit = self._policy.max_messages_per_connection
        if limit and session.messages >= limit:
            return replies.TOO_MANY_MESSAGES
        if not address or address == "<>":
            return replies.NULL_SENDER
        if not is_valid_address(address):
            return replies.BAD_SENDER
        try:
            await self._runtime.senders.check(session.principal, address)
        except SenderNotAllowed:
            return replies.SENDER_NOT_ALLOWED
        except StoreUnavailable:
            return replies.STORE_UNAVAILABLE
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK

    async def handle_RCPT(
        self,
        server: RelayProtocol,
        session: RelaySession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._policy.max_recipients:
            return replies.TOO_MANY_RECIPIENTS
        if not is_valid_address(address):
            return replies.BAD_RECIPIENT
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return replies.RECIPIENT_OK

    async def handle_DATA(
        self, server: RelayProtocol, session: RelaySession, envelope: Envelope
    ) -> str:
        data = envelope.original_content or b""
        if has_bare_newline(data):
            return replies.BARE_NEWLINE
        principal: Principal = session.principal
        assert principal is not None
        assert envelope.mail_from is not None
        origin = Origin(
            principal=principal,
            stream=self._policy.stream,
            source="smtp",
            client_ip=_ip(session),
        )
        raw = RawSubmission(
            sender=envelope.mail_from,
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            helo=session.host_name,
            hostname=server.settings.hostname,
            esmtp=session.extended_smtp,
            tls=session.tls,
            authenticated=bool(session.authenticated),
        )
        try:
            ids = await self._runtime.acceptor.relay(origin, raw)
        except HeaderFromMismatch:
            return replies.HEADER_FROM_MISMATCH
        except (StoreUnavailable, Conflict) as error:
            log.warning("SMTP message from %s not stored: %s", origin.client_ip, error)
            return replies.STORE_UNAVAILABLE
        session.messages += 1
        server.forgive_errors()
        return replies.QUEUED.format(message_id=ids[0])

    async def _trusted(self, session: RelaySession) -> Principal | None:
        """The trusted networks' principal, if the client is in one of them."""
        token_id = self._policy.trusted_token_id
        if token_id is None or not self._in_trusted_network(session):
            return None
        auth = self._runtime.auth
        principal = auth.cached_by_token_id(token_id) or await self._runtime.run(
            auth.by_token_id, token_id
        )
        if principal is None:
            log.warning("trusted networks are bound to token %d, which is gone", token_id)
        return principal

    def _in_trusted_network(self, session: RelaySession) -> bool:
        ip = _ip(session)
        if ip is None:
            return False
        known = self._trusted_ips.get(ip)
        if known is not None:
            return known
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        trusted = any(address in network for network in self._policy.trusted_networks)
        if len(self._trusted_ips) >= 10_000:
            self._trusted_ips.clear()
        self._trusted_ips[ip] = trusted
        return trusted


def _ip(session: Any) -> str | None:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None
