"""Deterministic aggregate ids.

Public integer ids (accounts, tokens, later domains, templates, webhooks) are allocated from a
`Sequence` aggregate and mapped to aggregate UUIDs with uuid5, so a replay of the log yields the
same ids and any process can find an aggregate from its public id without a lookup table.
"""

from uuid import UUID, uuid5

NAMESPACE = UUID("6f1c2b7e-5a0d-4c39-9b3e-2d7a8f4e1c50")


def entity_id(kind: str, number: int) -> UUID:
    """Aggregate id of the entity `kind` with public integer id `number`."""
    return uuid5(NAMESPACE, f"{kind}:{number}")


def sequence_id(kind: str) -> UUID:
    """Aggregate id of the counter that allocates public ids for `kind`."""
    return uuid5(NAMESPACE, f"sequence:{kind}")


def key_id(kind: str, key: str) -> UUID:
    """Aggregate id of the unique-key claim `key` in the key space `kind`."""
    return uuid5(NAMESPACE, f"key:{kind}:{key}")
