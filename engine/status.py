"""What an installation reports about itself: the log's head, how far behind it each read
model and process is, and the delivery queue (for `/metrics` and `postline status`)."""

from dataclasses import dataclass

from engine.runtime import Runtime
from engine.store import call
from projections.delivery_queue import pending
from projections.runner import positions


@dataclass(frozen=True, slots=True)
class Follower:
    name: str
    kind: str  # read_model | process
    position: int
    lag: int  # events of the log it has not seen yet (0: up to date)


@dataclass(frozen=True, slots=True)
class Status:
    head: int
    followers: list[Follower]
    queued: int  # messages waiting for delivery (due or not)


def status(runtime: Runtime) -> Status:
    """The installation's status, read from the shared store (any process may ask)."""
    head = runtime.store.head()
    stored = call(positions, runtime.store.db)
    followers = [
        Follower(
            p.projection.name,
            kind,
            stored.get(p.projection.name, 0),
            max(0, head - stored.get(p.projection.name, 0)),
        )
        for kind, group in (("read_model", runtime.projectors), ("process", runtime.processes))
        for p in group
    ]
    return Status(head, followers, call(pending, runtime.store.db))
