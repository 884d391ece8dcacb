"""Account and token commands, and token authentication."""

import secrets
import threading
import time
from dataclasses import dataclass

from domain.accounts import ACCESS_ADMIN, TOKEN_KEY_SPACE, Account, ApiToken, token_digest
from domain.ids import entity_id, key_id, sequence_id
from domain.keys import UniqueKey
from domain.sequences import Sequence
from engine.errors import Conflict
from engine.store import EventStore

ALLOCATION_ATTEMPTS = 20


class UnknownAccount(LookupError):
    """No account has that id."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token and the account it belongs to."""

    token_id: int
    account_id: int
    token_name: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: int
    account_id: int
    name: str
    token: str  # the secret: returned once, never stored


def _allocate(store: EventStore, kind: str) -> tuple[Sequence, int]:
    sequence = store.get(sequence_id(kind)) or Sequence(id=sequence_id(kind), kind=kind)
    return sequence, sequence.allocate()


def open_account(store: EventStore, name: str) -> int:
    """Open an account; returns its public id."""
    for _ in range(ALLOCATION_ATTEMPTS):
        sequence, number = _allocate(store, "account")
        account = Account(id=entity_id("account", number), account_id=number, name=name)
        try:
            store.save(sequence, account)
        except Conflict:
            continue  # another process took that number; take the next one
        return number
    raise Conflict("could not allocate an account id")


def account_exists(store: EventStore, account_id: int) -> bool:
    return store.get(entity_id("account", account_id)) is not None


def issue_token(store: EventStore, account_id: int, name: str, created_by: str) -> IssuedToken:
    """Issue an API token with admin access to the account. The secret is returned only here."""
    if not account_exists(store, account_id):
        raise UnknownAccount(f"account {account_id} does not exist")
    for _ in range(ALLOCATION_ATTEMPTS):
        secret = secrets.token_hex(16)
        digest = token_digest(secret)
        sequence, number = _allocate(store, "api_token")
        token = ApiToken(
            id=entity_id("api_token", number),
            token_id=number,
            account_id=account_id,
            name=name,
            digest=digest,
            last_4_digits=secret[-4:],
            resources=[
                {
                    "resource_type": "account",
                    "resource_id": account_id,
                    "access_level": ACCESS_ADMIN,
                },
            ],
            created_by=created_by,
        )
        key = UniqueKey(
            id=key_id(TOKEN_KEY_SPACE, digest), kind=TOKEN_KEY_SPACE, key=digest, owner=token.id
        )
        try:
            store.save(sequence, token, key)
        except Conflict:
            continue
        return IssuedToken(token_id=number, account_id=account_id, name=name, token=secret)
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
        entry = self._cache.get(token_digest(secret))
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def authenticate(self, secret: str) -> Principal | None:
        """The principal for `secret`, or None when the token is unknown or revoked."""
        digest = token_digest(secret)
        entry = self._cache.get(digest)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        principal = self._lookup(digest)
        with self._lock:
            if principal is None:
                self._cache.pop(digest, None)
            else:
                if len(self._cache) >= self._max_entries:
                    self._cache.clear()
                self._cache[digest] = (now + self._ttl, principal)
        return principal

    def by_token_id(self, token_id: int) -> Principal | None:
        """The principal of the token with public id `token_id`, if it exists and is not revoked.

        For listeners bound to one token (SMTP trusted networks); cached like secrets.
        """
        cache_key = f"id:{token_id}"
        entry = self._cache.get(cache_key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        token = self._store.get(entity_id("api_token", token_id))
        principal = None
        if isinstance(token, ApiToken) and not token.revoked:
            principal = Principal(
                token_id=token.token_id, account_id=token.account_id, token_name=token.name
            )
        with self._lock:
            if principal is None:
                self._cache.pop(cache_key, None)
            else:
                self._cache[cache_key] = (now + self._ttl, principal)
        return principal

    def cached_by_token_id(self, token_id: int) -> Principal | None:
        """`by_token_id` from the cache only (no I/O)."""
        entry = self._cache.get(f"id:{token_id}")
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def _lookup(self, digest: str) -> Principal | None:
        key = self._store.get(key_id(TOKEN_KEY_SPACE, digest))
        if key is None or key.owner is None:
            return None
        token = self._store.get(key.owner)
        if not isinstance(token, ApiToken) or token.revoked or token.digest != digest:
            return None
        return Principal(
            token_id=token.token_id, account_id=token.account_id, token_name=token.name
        )
