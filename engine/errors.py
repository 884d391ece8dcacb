"""Errors the engine reports to its entry points."""


class StoreUnavailable(Exception):
    """The event store cannot be reached; nothing was written. Clients should retry."""


class Conflict(Exception):
    """A concurrent write won; the command may be retried."""


class Forbidden(Exception):
    """The caller's API token may not do this (its grants do not reach that far)."""
