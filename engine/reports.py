"""Run a report over the whole log (see domain.reports): the message events, page by page."""

from collections.abc import Callable
from datetime import datetime

from eventsourcing.utils import get_topic

from domain.message import Message
from domain.reports import REPORTS, Report
from engine.store import EventStore, call

PAGE = 5000
TOPICS = sorted(get_topic(kind) for kind in (Message.Accepted, Message.Delivered, Message.Bounced))


def run_report(
    store: EventStore,
    name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Replay the log into the report `name` (KeyError if there is none such)."""
    report = REPORTS[name](since, until)
    head = store.head()
    recorder, to_event = store.app.recorder, store.app.mapper.to_domain_event
    position = 0
    while position < head:
        page = call(
            recorder.select_notifications,
            position,
            PAGE,
            head,
            TOPICS,
            inclusive_of_start=False,
        )
        for notification in page:
            report.add(to_event(notification))
        position = page[-1].id if len(page) == PAGE else head
        if progress is not None:
            progress(position, head)
    return report
