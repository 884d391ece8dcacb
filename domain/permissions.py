"""What an API token may do: its grants, read as permissions within its account (spec §1.6).

A grant is `(resource_type, resource_id, access_level)`. An account grant covers everything in
the account; a domain grant covers one sending domain (send from it, read and manage it). Viewers
(10) read; admins (100) also change and send. A token may manage another token only when it is
admin of everything that token grants, so no token can hand out more than it holds.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ACCESS_VIEWER = 10
ACCESS_ADMIN = 100
ACCESS_LEVELS = (ACCESS_VIEWER, ACCESS_ADMIN)
RESOURCE_TYPES = ("account", "project", "sandbox", "domain")


class InvalidGrant(ValueError):
    """A resource list that cannot be a token's grants (the message says why)."""


@dataclass(frozen=True, slots=True)
class Grant:
    resource_type: str
    resource_id: int
    access_level: int

    def as_dict(self) -> dict[str, int | str]:
        return {
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "access_level": self.access_level,
        }


def grants_of(resources: Iterable[Mapping[str, Any]]) -> tuple[Grant, ...]:
    """Grants from resource objects as stored or as an API body gives them; InvalidGrant if
    one is malformed. One grant per resource: the highest level given wins."""
    levels: dict[tuple[str, int], int] = {}
    for number, resource in enumerate(resources, 1):
        if not isinstance(resource, Mapping):
            raise InvalidGrant(f"resource {number} must be an object")
        kind = resource.get("resource_type")
        if kind not in RESOURCE_TYPES:
            raise InvalidGrant(
                f"resource {number}: resource_type must be one of {', '.join(RESOURCE_TYPES)}"
            )
        resource_id = resource.get("resource_id")
        if isinstance(resource_id, str) and resource_id.isdigit():
            resource_id = int(resource_id)
        if isinstance(resource_id, bool) or not isinstance(resource_id, int) or resource_id < 1:
            raise InvalidGrant(f"resource {number}: resource_id must be a positive integer")
        level = resource.get("access_level")
        if level not in ACCESS_LEVELS:
            raise InvalidGrant(
                f"resource {number}: access_level must be {ACCESS_VIEWER} (viewer)"
                f" or {ACCESS_ADMIN} (admin)"
            )
        key = (str(kind), resource_id)
        levels[key] = max(levels.get(key, 0), int(level))
    return tuple(Grant(kind, rid, level) for (kind, rid), level in levels.items())


@dataclass(frozen=True, slots=True)
class Access:
    """The permissions a token's grants give in its account."""

    account_id: int
    grants: tuple[Grant, ...]
    account_level: int = field(init=False)  # derived once: every send asks for it

    def __post_init__(self) -> None:
        level = max(
            (
                g.access_level
                for g in self.grants
                if g.resource_type == "account" and g.resource_id == self.account_id
            ),
            default=0,
        )
        object.__setattr__(self, "account_level", level)

    def level(self, resource_type: str, resource_id: int) -> int:
        """The access this token has to one resource of its account (the caller makes sure
        the resource is of this account; an account is checked here)."""
        if resource_type == "account":
            return self.account_level if resource_id == self.account_id else 0
        own = max(
            (
                g.access_level
                for g in self.grants
                if g.resource_type == resource_type and g.resource_id == resource_id
            ),
            default=0,
        )
        return max(own, self.account_level)

    def reads_account(self) -> bool:
        return self.account_level >= ACCESS_VIEWER

    def administers_account(self) -> bool:
        return self.account_level >= ACCESS_ADMIN

    def reads_domain(self, domain_id: int) -> bool:
        return self.level("domain", domain_id) >= ACCESS_VIEWER

    def readable_domains(self) -> frozenset[int] | None:
        """The sending domains whose mail and figures this token may read: None for all of
        the account's (account-wide access)."""
        if self.reads_account():
            return None
        return frozenset(
            g.resource_id
            for g in self.grants
            if g.resource_type == "domain" and g.access_level >= ACCESS_VIEWER
        )

    def administers_domain(self, domain_id: int) -> bool:
        """May change the domain and send from it."""
        return self.level("domain", domain_id) >= ACCESS_ADMIN

    def covers(self, grants: Iterable[Grant]) -> bool:
        """Whether this token is admin of everything `grants` give (so may manage them)."""
        return all(self.level(g.resource_type, g.resource_id) >= ACCESS_ADMIN for g in grants)
