"""Sending domains: a domain an account proves it owns before it may send from it.

The aggregate keeps the domain's DKIM keys (the private halves sealed by the engine, never in
clear in the log), its verification token, its settings and the outcome of every DNS check.
`dns_verified` flips with `DomainVerified` / `VerificationLost` when a check's required records
all pass or stop passing.

DKIM rotation: one selector signs, the other stands by, both published. A rotation puts a
fresh key on the standby selector, marked `pending` (not required for verification, so the
domain goes on signing with the old key); the first check that finds the new key published
makes it the signing one, and the old selector becomes the standby, still published.
"""

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.activity import SYSTEM, Actor, changes_between
from domain.dns_records import publishes_key

# What a domain's owner may change (PATCH), with the defaults of a new domain.
SETTINGS: dict[str, bool] = {
    "open_tracking_enabled": True,  # on by default, as Mailtrap has it (needs a public URL)
    "click_tracking_enabled": False,
    "auto_unsubscribe_link_enabled": False,
    "custom_domain_tracking_enabled": False,
    "health_alerts_enabled": False,
    "critical_alerts_enabled": False,
    "tracking_opt_out_enabled": False,
    "inbound_enabled": False,
}
DOMAIN_KEY_SPACE = "sending-domain"  # UniqueKey space: one live domain per name


class SendingDomain(Aggregate):
    """A domain of an account (see the module docstring)."""

    @event("DomainAdded")
    def __init__(
        self,
        id: UUID,
        domain_id: int,
        account_id: int,
        name: str,
        verification_token: str,
        dkim_keys: list[dict[str, str]],  # selector, algorithm, public (TXT p=), sealed private
        actor: Actor | None = None,  # who added it (domain.activity)
    ) -> None:
        self.domain_id = domain_id
        self.account_id = account_id
        self.name = name
        self.verification_token = verification_token
        self.dkim_keys = dkim_keys
        self.settings = dict(SETTINGS)
        self.records: list[dict[str, Any]] = []  # the last check: key, status, found
        self.checked_at: datetime | None = None
        self.dns_verified = False
        self.dns_verified_at: datetime | None = None
        self.deleted = False

    @event("DnsChecked")
    def _checked(self, records: list[dict[str, Any]], at: datetime) -> None:
        self.records = records
        self.checked_at = at

    @event("DomainVerified")
    def _verified(self, at: datetime) -> None:
        self.dns_verified = True
        self.dns_verified_at = at

    @event("VerificationLost")
    def _lost(self, failing: list[str]) -> None:
        self.dns_verified = False

    @event("SettingsChanged")
    def _change(
        self,
        settings: dict[str, bool],
        actor: Actor | None = None,
        changes: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings

    @event("DomainDeleted")
    def _delete(self, actor: Actor | None = None) -> None:
        self.deleted = True

    @event("DkimKeysChanged")
    def _keys(self, dkim_keys: list[dict[str, Any]], actor: Actor | None = None) -> None:
        self.dkim_keys = dkim_keys

    def rotate_dkim(self, key: dict[str, str], actor: Actor = SYSTEM) -> str:
        """Put `key` on the standby selector, pending until DNS has it; returns the selector.
        A rotation still pending is restarted with the new key."""
        signing = signing_key(self.dkim_keys)
        standby = next(k for k in self.dkim_keys if k is not signing)
        selector = standby["selector"]
        keys = [
            {**current, "signs": True, "pending": False}
            if current is signing
            else {**key, "selector": selector, "signs": False, "pending": True}
            for current in self.dkim_keys
        ]
        self._keys(keys, actor)
        return selector

    def record_check(self, records: list[dict[str, Any]], required: set[str], at: datetime) -> None:
        """Record a DNS check: verified when every required record passes; lost when one is
        found wrong or gone (a lookup that failed proves nothing either way)."""
        self._checked(records, at)
        self._finish_rotation(records)
        required_results = [r for r in records if r["key"] in required]
        passing = all(r["status"] == "pass" for r in required_results)
        failing = sorted(r["key"] for r in required_results if r["status"] in ("fail", "missing"))
        if passing and not self.dns_verified:
            self._verified(at)
        elif failing and self.dns_verified:
            self._lost(failing)

    def _finish_rotation(self, records: list[dict[str, Any]]) -> None:
        """The pending key signs from now on once DNS publishes it (`dkim1`, `dkim2` are the
        records of the first and second key; what was found must hold this very key)."""
        found = {r["key"]: r.get("found", []) for r in records if r["status"] == "pass"}
        keys = self.dkim_keys
        if not any(
            k.get("pending") and publishes_key(found.get(f"dkim{n}", []), k["public"])
            for n, k in enumerate(keys, 1)
        ):
            return
        self._keys([{**k, "signs": bool(k.get("pending")), "pending": False} for k in keys], SYSTEM)

    def change_settings(self, changes: dict[str, bool], actor: Actor = SYSTEM) -> None:
        """Change settings; unknown names are the caller's error (ValueError)."""
        unknown = set(changes) - set(SETTINGS)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = {**self.settings, **changes}
        if settings != self.settings:
            self._change(settings, actor, changes_between(self.settings, settings))

    def delete(self, actor: Actor = SYSTEM) -> None:
        if not self.deleted:
            self._delete(actor)


def signing_key(keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The key that signs: the one marked so, else the first (as a new domain has it)."""
    return next((k for k in keys if k.get("signs")), keys[0])
