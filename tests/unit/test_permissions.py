"""Token grants as permissions, resets and a domain's last token (pure domain rules)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.accounts import ApiToken, DomainTokens, TokenRefused, checked_expiry
from domain.permissions import ACCESS_ADMIN, ACCESS_VIEWER, Access, Grant, InvalidGrant, grants_of

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def token(expires_at: datetime | None = None) -> ApiToken:
    return ApiToken(
        id=uuid.uuid4(),
        token_id=7,
        account_id=1,
        name="ci",
        digest="d",
        last_4_digits="abcd",
        resources=[{"resource_type": "account", "resource_id": 1, "access_level": 100}],
        created_by="t",
        expires_at=expires_at,
    )


def test_account_admin_covers_everything_in_its_account_only() -> None:
    access = Access(1, (Grant("account", 1, ACCESS_ADMIN),))
    assert access.administers_domain(42)
    assert access.covers([Grant("domain", 42, ACCESS_ADMIN), Grant("account", 1, ACCESS_VIEWER)])
    assert not access.covers([Grant("account", 2, ACCESS_VIEWER)])
    assert not Access(2, access.grants).reads_account()  # a grant on account 1 means nothing in 2


def test_a_domain_grant_reaches_its_domain() -> None:
    access = Access(1, (Grant("domain", 5, ACCESS_ADMIN), Grant("domain", 6, ACCESS_VIEWER)))
    assert access.administers_domain(5)
    assert access.reads_domain(6)
    assert not access.administers_domain(6)
    assert not access.reads_domain(7)
    assert not access.reads_account()
    assert access.covers([Grant("domain", 5, ACCESS_VIEWER)])
    assert not access.covers([Grant("domain", 6, ACCESS_VIEWER)])


def test_grants_are_validated_and_merged() -> None:
    merged = grants_of(
        [
            {"resource_type": "domain", "resource_id": "5", "access_level": 10},
            {"resource_type": "domain", "resource_id": 5, "access_level": 100},
        ]
    )
    assert merged == (Grant("domain", 5, ACCESS_ADMIN),)
    for bad in (
        [{"resource_type": "inbox", "resource_id": 1, "access_level": 10}],
        [{"resource_type": "domain", "resource_id": 0, "access_level": 10}],
        [{"resource_type": "domain", "resource_id": True, "access_level": 10}],
        [{"resource_type": "domain", "resource_id": 1, "access_level": 50}],
        ["domain"],
    ):
        with pytest.raises(InvalidGrant):
            grants_of(bad)


def test_a_reset_token_lasts_the_grace_period_and_is_reset_once() -> None:
    old = token()
    old.reset(8, NOW)
    assert old.expires_at == NOW + timedelta(hours=12)
    assert old.usable(NOW + timedelta(hours=11))
    assert not old.usable(NOW + timedelta(hours=12))
    with pytest.raises(TokenRefused, match="already been reset"):
        old.reset(9, NOW)
    ending = token(NOW + timedelta(hours=1))
    ending.reset(8, NOW)
    assert ending.expires_at == NOW + timedelta(hours=1)  # a grace never lengthens a life
    with pytest.raises(TokenRefused, match="expired"):
        token(NOW - timedelta(seconds=1)).reset(8, NOW)


def test_expiry_must_be_ahead_and_within_five_years() -> None:
    assert checked_expiry(None, NOW) is None
    assert checked_expiry(NOW + timedelta(days=1), NOW) == NOW + timedelta(days=1)
    for bad in (NOW, NOW + timedelta(days=5 * 365 + 1), datetime(2027, 1, 1)):
        with pytest.raises(TokenRefused):
            checked_expiry(bad, NOW)


def test_a_domain_keeps_its_last_usable_token() -> None:
    tokens = DomainTokens(id=uuid.uuid4(), domain_id=5)
    tokens.join(1, None)
    tokens.join(2, NOW - timedelta(days=1))  # expired: it does not count
    with pytest.raises(TokenRefused, match="last API token"):
        tokens.leave(1, NOW)
    tokens.leave(2, NOW)  # an expired one may go
    tokens.replace(1, 3, None)  # a reset: the successor takes its place
    assert set(tokens.tokens) == {3}
    tokens.join(4, NOW + timedelta(days=1))
    tokens.leave(3, NOW)
    assert set(tokens.tokens) == {4}
