"""Accounts and their API tokens."""

import hashlib
from uuid import UUID

from eventsourcing.domain import Aggregate, event

ACCESS_VIEWER = 10
ACCESS_ADMIN = 100
TOKEN_KEY_SPACE = "api-token-digest"  # noqa: S105 - a key-space name, not a secret


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
    """An API token. Only the digest and the last four characters are ever stored."""

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
    ) -> None:
        self.token_id = token_id
        self.account_id = account_id
        self.name = name
        self.digest = digest
        self.last_4_digits = last_4_digits
        self.resources = resources
        self.created_by = created_by
        self.revoked = False

    @event("Revoked")
    def revoke(self, by: str) -> None:
        self.revoked = True
