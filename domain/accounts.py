"""Accounts, their API tokens, and the tokens each sending domain keeps (spec §1.6)."""

import hashlib
from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.activity import SYSTEM, Actor
from domain.permissions import Grant, grants_of

TOKEN_KEY_SPACE = "api-token-digest"  # noqa: S105 - a key-space name, not a secret
RESET_GRACE = timedelta(hours=12)  # a reset token keeps working this long
DEFAULT_LIFETIME = timedelta(days=365)  # when a create or reset names no expiry
MAX_LIFETIME = timedelta(days=5 * 365)


class TokenRefused(ValueError):
    """A token change the rules do not allow (the message says why, for an HTTP 422)."""


def token_digest(secret: str) -> str:
    """Digest under which a token is stored and looked up.

    Tokens carry 128 random bits, so a fast hash is enough: there is nothing to brute-force,
    and a slow password hash would cost every API request.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Account(Aggregate):
    """A tenant: owns tokens, domains, messages."""

    @event("Opened")
    def __init__(self, id: UUID, account_id: int, name: str) -> None:
        self.account_id = account_id
        self.name = name


class ApiToken(Aggregate):
    """An API token. Only the digest and the last four characters are ever stored.

    A reset issues a successor with the same grants and cuts this token's life to the grace
    period; a token is reset once. Expired and revoked tokens authenticate nothing.
    """

    @event("Issued")
    def __init__(
        self,
        id: UUID,
        token_id: int,
        account_id: int,
        name: str,
        digest: str,
        last_4_digits: str,
        resources: list[dict[str, int | str]],
        created_by: str,
        expires_at: datetime | None = None,
        actor: Actor | None = None,  # who issued it (domain.activity)
    ) -> None:
        self.token_id = token_id
        self.account_id = account_id
        self.name = name
        self.digest = digest
        self.last_4_digits = last_4_digits
        self.resources = resources
        self.created_by = created_by
        self.expires_at = expires_at
        self.successor: int | None = None
        self.revoked = False

    @event("Revoked")
    def revoke(self, by: str, actor: Actor | None = None) -> None:
        self.revoked = True

    @event("Reset")
    def _reset(self, successor: int, expires_at: datetime, actor: Actor | None = None) -> None:
        self.successor = successor
        self.expires_at = expires_at

    @property
    def grants(self) -> tuple[Grant, ...]:
        return grants_of(self.resources)

    def usable(self, now: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)

    def reset(self, successor: int, now: datetime, actor: Actor = SYSTEM) -> None:
        """Hand over to `successor`: this token works for the grace period more, at most."""
        if self.successor is not None:
            raise TokenRefused("this token has already been reset")
        if not self.usable(now):
            raise TokenRefused("an expired token cannot be reset")
        ends = now + RESET_GRACE
        self._reset(
            successor, ends if self.expires_at is None else min(ends, self.expires_at), actor
        )


def checked_expiry(value: datetime | None, now: datetime) -> datetime | None:
    """An expiry a token may be given: in the future, at most five years ahead (None: never)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise TokenRefused("expires_at must include a time zone")
    if value <= now:
        raise TokenRefused("expires_at must be in the future")
    if value > now + MAX_LIFETIME:
        raise TokenRefused("expires_at must be at most 5 years ahead")
    return value


class DomainTokens(Aggregate):
    """The API tokens scoped to one sending domain: its last usable token cannot be deleted.

    One aggregate per domain, so two deletions racing for the last two tokens conflict.
    `tokens` maps token id to expiry (None: never); a reset token leaves, its successor joins.
    """

    @event("Opened")
    def __init__(self, id: UUID, domain_id: int) -> None:
        self.domain_id = domain_id
        self.tokens: dict[int, datetime | None] = {}

    @event("TokenJoined")
    def join(self, token_id: int, expires_at: datetime | None) -> None:
        self.tokens[token_id] = expires_at

    @event("TokenLeft")
    def _leave(self, token_id: int) -> None:
        self.tokens.pop(token_id, None)

    def leave(self, token_id: int, now: datetime) -> None:
        """Take a deleted token off; TokenRefused if it is the domain's last usable one."""
        if token_id not in self.tokens:
            return
        if _alive(self.tokens[token_id], now) and not any(
            _alive(expiry, now) for other, expiry in self.tokens.items() if other != token_id
        ):
            raise TokenRefused("the last API token of a sending domain cannot be deleted")
        self._leave(token_id)

    def replace(self, old: int, new: int, expires_at: datetime | None) -> None:
        """A reset: the successor takes the old token's place."""
        self.join(new, expires_at)
        if old in self.tokens:
            self._leave(old)


def _alive(expiry: datetime | None, now: datetime) -> bool:
    return expiry is None or now < expiry
