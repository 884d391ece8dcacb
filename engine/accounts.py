"""Account and token commands, and token authentication."""

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.accounts import TOKEN_KEY_SPACE, Account, ApiToken, token_digest
from domain.activity import SYSTEM, Actor, token_actor
from domain.ids import entity_id, key_id, sequence_id
from domain.keys import UniqueKey
from domain.permissions import ACCESS_ADMIN, Access, Grant
from domain.sequences import Sequence
from engine.errors import Conflict
from engine.store import EventStore

ALLOCATION_ATTEMPTS = 20


class UnknownAccount(LookupError):
    """No account has that id."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token, the account it belongs to, and what it may do there."""

    token_id: int
    account_id: int
    token_name: str
    grants: tuple[Grant, ...]
    expires_at: datetime | None = None
    retiring: bool = False  # reset: working out its grace period, it manages no tokens

    @property
    def actor(self) -> Actor:
        """This token, as the audit log names who made a change."""
        return token_actor(self.token_id, self.token_name)

    access: Access = field(init=False, compare=False)  # derived once, asked on every send

    def __post_init__(self) -> None:
        object.__setattr__(self, "access", Access(self.account_id, self.grants))

    @classmethod
    def of(cls, token: ApiToken) -> "Principal":
        return cls(
            token.token_id,
            token.account_id,
            token.name,
            token.grants,
            token.expires_at,
            token.successor is not None,
        )


def account_admin(account_id: int) -> tuple[Grant, ...]:
    """The grants of a token that may do everything in the account."""
    return (Grant("account", account_id, ACCESS_ADMIN),)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: int
    account_id: int
    name: str
    token: str  # the secret: returned once, never stored


def allocate(store: EventStore, kind: str) -> tuple[Sequence, int]:
    """The next public id of `kind`, and its sequence to save with what it numbers."""
    sequence = store.get(sequence_id(kind)) or Sequence(id=sequence_id(kind), kind=kind)
    return sequence, sequence.allocate()


def open_account(store: EventStore, name: str) -> int:
    """Open an account; returns its public id."""
    for _ in range(ALLOCATION_ATTEMPTS):
        sequence, number = allocate(store, "account")
        account = Account(id=entity_id("account", number), account_id=number, name=name)
        try:
            store.save(sequence, account)
        except Conflict:
            continue  # another process took that number; take the next one
        return number
    raise Conflict("could not allocate an account id")


def account_exists(store: EventStore, account_id: int) -> bool:
    return store.get(entity_id("account", account_id)) is not None


@dataclass(frozen=True, slots=True)
class Minted:
    """A new token, not saved yet: `objects` are what to save together."""

    token: ApiToken
    secret: str  # returned once, never stored
    objects: tuple[Any, ...]


def mint(
    store: EventStore,
    account_id: int,
    name: str | Callable[[int], str],
    grants: tuple[Grant, ...],
    created_by: str,
    expires_at: datetime | None = None,
    actor: Actor = SYSTEM,
) -> Minted:
    """Allocate a token id and make the token (`name` may be made from the id) and its digest
    key. Tokens carry 128 random bits; only their digest is stored."""
    secret = secrets.token_hex(16)
    digest = token_digest(secret)
    sequence, number = allocate(store, "api_token")
    token = ApiToken(
        id=entity_id("api_token", number),
        token_id=number,
        account_id=account_id,
        name=name if isinstance(name, str) else name(number),
        digest=digest,
        last_4_digits=secret[-4:],
        resources=[grant.as_dict() for grant in grants],
        created_by=created_by,
        expires_at=expires_at,
        actor=actor,
    )
    key = UniqueKey(
        id=key_id(TOKEN_KEY_SPACE, digest), kind=TOKEN_KEY_SPACE, key=digest, owner=token.id
    )
    return Minted(token, secret, (sequence, token, key))


def issue_token(
    store: EventStore, account_id: int, name: str, created_by: str, actor: Actor = SYSTEM
) -> IssuedToken:
    """Issue an API token with admin access to the account, for operators (the CLI and first-run
    set-up): it never expires. The secret is returned only here."""
    if not account_exists(store, account_id):
        raise UnknownAccount(f"account {account_id} does not exist")
    for _ in range(ALLOCATION_ATTEMPTS):
        minted = mint(store, account_id, name, account_admin(account_id), created_by, None, actor)
        try:
            store.save(*minted.objects)
        except Conflict:
            continue
        return IssuedToken(minted.token.token_id, account_id, name, minted.secret)
    raise Conflict("could not allocate a token id")


class Authenticator:
    """Resolve API tokens to principals, with a short cache.

    The lookup reads the event store directly (digest key -> token aggregate), so a token is
    usable the moment it is issued and a revocation takes effect within `ttl` seconds.
    """

    def __init__(self, store: EventStore, ttl: float = 5.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl = ttl
        self._max_entries = max_entries
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def cached(self, secret: str) -> Principal | None:
        """The principal for `secret` if it is cached and fresh (no I/O)."""
        return self._fresh(token_digest(secret))

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for `secret`, or None when the token is unknown or revoked."""
        digest = token_digest(secret)
        return self._fresh(digest) or self._remember(digest, self._lookup(digest))

    def by_token_id(self, token_id: int) -> Principal | None:
        """The principal of the token with public id `token_id`, if it exists and is not revoked.

        For listeners bound to one token (SMTP trusted networks); cached like secrets.
        """
        cache_key = f"id:{token_id}"
        found = self._fresh(cache_key)
        if found is not None:
            return found
        token = self._store.get(entity_id("api_token", token_id))
        usable = isinstance(token, ApiToken) and token.usable(datetime.now(UTC))
        return self._remember(cache_key, Principal.of(token) if usable else None)

    def cached_by_token_id(self, token_id: int) -> Principal | None:
        """`by_token_id` from the cache only (no I/O)."""
        return self._fresh(f"id:{token_id}")

    def forget(self) -> None:
        """Drop every cached principal (a token was revoked or reset by this process)."""
        with self._lock:
            self._cache.clear()

    def _fresh(self, cache_key: str) -> Principal | None:
        """A cached principal that is neither stale nor past its token's expiry (no clock
        reading beyond one monotonic one: the entry's deadline includes the expiry)."""
        entry = self._cache.get(cache_key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def _remember(self, cache_key: str, principal: Principal | None) -> Principal | None:
        with self._lock:
            if principal is None:
                self._cache.pop(cache_key, None)
            else:
                if len(self._cache) >= self._max_entries:
                    self._cache.clear()
                keep = self._ttl
                if principal.expires_at is not None:  # never past the token's own expiry
                    left = (principal.expires_at - datetime.now(UTC)).total_seconds()
                    keep = min(keep, left)
                self._cache[cache_key] = (time.monotonic() + keep, principal)
        return principal

    def _lookup(self, digest: str) -> Principal | None:
        key = self._store.get(key_id(TOKEN_KEY_SPACE, digest))
        if key is None or key.owner is None:
            return None
        token = self._store.get(key.owner)
        if not isinstance(token, ApiToken) or token.digest != digest:
            return None
        return Principal.of(token) if token.usable(datetime.now(UTC)) else None
