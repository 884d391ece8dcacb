"""Who changed what: the actors of control-plane changes, as the audit log names them.

An actor is the API token that made the change, an operator at the command line, or Postline
itself (DNS checks, automatic suppressions), in the shape of the audit-log webhook's `actor`
(spec §3.4): `{"id": 7, "type": "api_token", "name": "ci"}`, `{"type": "user", "name": ...}`,
`{"name": "Postline"}`.
"""

from typing import Any

Actor = dict[str, Any]

SYSTEM: Actor = {"name": "Postline"}


def token_actor(token_id: int, name: str) -> Actor:
    return {"id": token_id, "type": "api_token", "name": name}


def operator_actor(name: str) -> Actor:
    """Someone at the command line of a Postline machine (`name`: their login)."""
    return {"type": "user", "name": name}


def changes_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """`{"field": {"from": old, "to": new}}` for each field that differs."""
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    }
