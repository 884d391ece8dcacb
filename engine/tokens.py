"""API-token commands: create, reset and delete, within what the caller's own token may do.

A caller manages a token only when it is admin of everything that token grants (so nothing
is handed out beyond what the caller holds). A new token expires after a year unless the
request names another expiry (or `null`: never). A reset issues a successor with the same
grants, named with its id, and the old secret keeps working for 12 hours; a token is reset once.
The last usable token of a sending domain cannot be deleted (`DomainTokens`).
"""

import re
from datetime import datetime
from functools import partial
from typing import Any

from domain.accounts import (
    DEFAULT_LIFETIME,
    ApiToken,
    DomainTokens,
    TokenRefused,
    checked_expiry,
)
from domain.ids import entity_id
from domain.permissions import ACCESS_ADMIN, Grant, grants_of
from engine.accounts import ALLOCATION_ATTEMPTS, Minted, Principal, mint
from engine.domains import NoSuchDomain, get_domain
from engine.errors import Conflict, Forbidden
from engine.store import EventStore

MAX_NAME_LENGTH = 255
DEFAULT = object()  # as `expires_at`: none given, so the default lifetime applies (None: never)


class NoSuchToken(LookupError):
    """No token with that id in the caller's account (or one already deleted)."""


def get_token(store: EventStore, account_id: int, token_id: int) -> ApiToken:
    """The account's token `token_id` that has not been deleted, or NoSuchToken."""
    token = store.get(entity_id("api_token", token_id))
    if not isinstance(token, ApiToken) or token.account_id != account_id or token.revoked:
        raise NoSuchToken(token_id)
    return token


def create_token(
    store: EventStore,
    caller: Principal,
    name: Any,
    resources: Any,
    expires_at: object,
    now: datetime,
) -> Minted:
    """Issue a token with `resources` as its grants; TokenRefused or InvalidGrant for bad input,
    Forbidden beyond the caller's reach."""
    if not isinstance(name, str) or not name.strip():
        raise TokenRefused("name is required")
    if len(name.strip()) > MAX_NAME_LENGTH:
        raise TokenRefused(f"name must be at most {MAX_NAME_LENGTH} characters")
    if not isinstance(resources, list) or not resources:
        raise TokenRefused("resources must list at least one resource")
    grants = grants_of(resources)
    _check_resources(store, caller.account_id, grants)
    _may_manage(caller)
    if not caller.access.covers(grants):
        raise Forbidden("a token may only grant what the caller's token administers")
    expiry = _expiry(expires_at, now, caller)
    for _ in range(ALLOCATION_ATTEMPTS):
        minted = mint(
            store, caller.account_id, name.strip(), grants, caller.token_name, expiry, caller.actor
        )
        joined = _domain_tokens(store, grants)
        for tokens in joined:
            tokens.join(minted.token.token_id, expiry)
        try:
            store.save(*minted.objects, *joined)
        except Conflict:
            continue
        return minted
    raise Conflict("could not allocate a token id")


def reset_token(
    store: EventStore,
    caller: Principal,
    token_id: int,
    expires_at: object,
    now: datetime,
) -> Minted:
    """Replace a token by a successor with the same grants; the old one lasts 12 hours more.
    Without an expiry given, a token that never expired is succeeded by one that never does."""
    for _ in range(ALLOCATION_ATTEMPTS):
        token = _managed(store, caller, token_id)
        never = expires_at is DEFAULT and token.expires_at is None and caller.expires_at is None
        expiry = None if never else _expiry(expires_at, now, caller)
        minted = mint(
            store,
            caller.account_id,
            partial(_successor_name, token),
            token.grants,
            caller.token_name,
            expiry,
            caller.actor,
        )
        token.reset(minted.token.token_id, now, caller.actor)
        replaced = _domain_tokens(store, token.grants)
        for tokens in replaced:
            tokens.replace(token_id, minted.token.token_id, expiry)
        try:
            store.save(*minted.objects, token, *replaced)
        except Conflict:
            continue
        return minted
    raise Conflict("could not allocate a token id")


def delete_token(store: EventStore, caller: Principal, token_id: int, now: datetime) -> None:
    """Delete a token at once; TokenRefused when it is a sending domain's last usable token."""
    for attempt in range(1, ALLOCATION_ATTEMPTS + 1):
        token = _managed(store, caller, token_id)
        left = _domain_tokens(store, token.grants)
        for tokens in left:
            tokens.leave(token_id, now)
        token.revoke(by=caller.token_name, actor=caller.actor)
        try:
            store.save(token, *left)
            return
        except Conflict:  # another change to these tokens: look again
            if attempt == ALLOCATION_ATTEMPTS:
                raise


def visible(caller: Principal, grants: tuple[Grant, ...], token_id: int) -> bool:
    """Whether the caller may see a token: its own, or one it could manage."""
    return token_id == caller.token_id or caller.access.covers(grants)


def _may_manage(caller: Principal) -> None:
    if caller.retiring:
        raise Forbidden("this token has been reset: its successor manages tokens")


def _managed(store: EventStore, caller: Principal, token_id: int) -> ApiToken:
    _may_manage(caller)
    token = get_token(store, caller.account_id, token_id)
    if not caller.access.covers(token.grants):
        raise Forbidden("this token grants more than the caller's token administers")
    return token


def _check_resources(store: EventStore, account_id: int, grants: tuple[Grant, ...]) -> None:
    for grant in grants:
        if grant.resource_type == "account":
            if grant.resource_id != account_id:
                raise TokenRefused(f"account {grant.resource_id} is not this account")
        elif grant.resource_type == "domain":
            try:
                get_domain(store, account_id, grant.resource_id)
            except NoSuchDomain:
                raise TokenRefused(
                    f"sending domain {grant.resource_id} does not exist in this account"
                ) from None
        else:  # projects and sandboxes come with the sandbox
            raise TokenRefused(
                f"{grant.resource_type} {grant.resource_id} does not exist in this account"
            )


def _domain_tokens(store: EventStore, grants: tuple[Grant, ...]) -> list[DomainTokens]:
    """The token lists of the domains these grants administer."""
    found = []
    for grant in grants:
        if grant.resource_type == "domain" and grant.access_level >= ACCESS_ADMIN:
            tokens = store.get(entity_id("domain_tokens", grant.resource_id))
            if not isinstance(tokens, DomainTokens):
                tokens = DomainTokens(
                    id=entity_id("domain_tokens", grant.resource_id), domain_id=grant.resource_id
                )
            found.append(tokens)
    return found


def _expiry(value: object, now: datetime, caller: Principal) -> datetime | None:
    """The expiry a new token gets: never later than the caller's own."""
    if value is DEFAULT:
        default = now + DEFAULT_LIFETIME
        return default if caller.expires_at is None else min(default, caller.expires_at)
    if value is not None and not isinstance(value, datetime):
        raise TokenRefused("expires_at must be an ISO 8601 time or null")
    expiry = checked_expiry(value, now)
    if caller.expires_at is not None and (expiry is None or expiry > caller.expires_at):
        raise TokenRefused("a token cannot outlive the token that creates it")
    return expiry


def _successor_name(token: ApiToken, number: int) -> str:
    """The old name with the new id: a trailing old id is replaced, else the id is added."""
    base = re.sub(rf" {token.token_id}$", "", token.name)
    return f"{base} {number}"
