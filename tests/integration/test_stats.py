"""The stats read model and API (spec §1.8, §9), on SQLite and PostgreSQL.

The check #40 history goes through the engine: ten messages accepted over the API's acceptor,
dispatched, delivered by the MTA to a local MX sink (nine taken, one refused 550) whose host
names say Google and Proton Mail, opened and clicked through the tracking functions, one
complained about through the feedback-loop path.
"""

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from adapters.dkim_signing import Signer
from adapters.dns import MxResolver
from domain.feedback_reports import Complaint
from domain.message import Message, accepted, follow_up
from domain.permissions import ACCESS_VIEWER, Grant
from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin, issue_token, mint, open_account
from engine.domains import add_domain, delete_domain
from engine.mta import Mta, MtaSettings
from engine.opt_outs import complain
from engine.runtime import Runtime
from engine.tracking import record_click, record_open
from tests.support.dns import LocalDns, Zone
from tests.support.live import LiveServer
from tests.support.mx_sink import FAST_RETRIES, MxSink

KINDS = ("", "/domains", "/categories", "/email_service_providers", "/date")


def figures(
    delivered: int,
    delivery_rate: float,
    bounced: int,
    bounce_rate: float,
    opened: int,
    open_rate: float,
    clicked: int,
    click_rate: float,
    spam: int,
    spam_rate: float,
) -> dict[str, Any]:
    return {
        "delivery_count": delivered,
        "delivery_rate": delivery_rate,
        "bounce_count": bounced,
        "bounce_rate": bounce_rate,
        "open_count": opened,
        "open_rate": open_rate,
        "click_count": clicked,
        "click_rate": click_rate,
        "spam_count": spam,
        "spam_rate": spam_rate,
    }


NOTHING = figures(0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0)
# Check #40: 10 sent, 9 delivered, 1 bounced, 6 opened, 3 clicked, 1 spam complaint.
CHECK_40 = figures(9, 0.9, 1, 0.1, 6, 0.6, 3, 0.3333, 1, 0.1111)
# example.com (transactional, "orders"): 7 sent, 6 delivered, 1 bounced, 4 opened, 2 clicked,
# 1 complaint; example.org (bulk, "news"): 3 sent, 3 delivered, 2 opened, 1 clicked.
COM = figures(6, 0.8571, 1, 0.1429, 4, 0.5714, 2, 0.3333, 1, 0.1667)
ORG = figures(3, 1.0, 0, 0.0, 2, 0.6667, 1, 0.3333, 0, 0.0)
# Google: ok1-6, unknown, ok9 (8 sent, 7 delivered); ProtonMail: ok7, ok8.
GOOGLE = figures(7, 0.875, 1, 0.125, 5, 0.625, 2, 0.2857, 1, 0.1429)
PROTON = figures(2, 1.0, 0, 0.0, 1, 0.5, 1, 0.5, 0, 0.0)


@dataclass
class History:
    runtime: Runtime
    live: LiveServer
    account_id: int
    token: str
    com: int  # example.com's domain id
    org: int  # example.org's
    ids: dict[str, str]  # recipient's local part -> message id
    days: set[str]  # the UTC day(s) it happened on (two if it ran over midnight)

    def get(self, path: str, token: str | None = None, **params: Any) -> Any:
        params = {"start_date": min(self.days), "end_date": max(self.days), **params}
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.live.client.get(path, params=params, headers=headers)

    def stats(self, kind: str = "", **params: Any) -> Any:
        answer = self.get(f"/api/accounts/{self.account_id}/stats{kind}", **params)
        assert answer.status_code == 200, answer.text
        return answer.json()


def origin(account_id: int, stream: str) -> Origin:
    return Origin(Principal(1, account_id, "t", account_admin(account_id)), stream, "api", None)


def draft(sender: str, recipients: list[str], category: str) -> Draft:
    return msgspec.convert(
        {
            "from": {"email": sender},
            "to": [{"email": r} for r in recipients],
            "subject": "Hello",
            "text": "Hi",
            "category": category,
        },
        Draft,
    )


@pytest.fixture
def history(runtime: Runtime, account: tuple[int, str]) -> Iterator[History]:
    account_id, token = account
    config = runtime.domain_config
    com = add_domain(runtime.store, runtime.secrets, config, account_id, "example.com")
    org = add_domain(runtime.store, runtime.secrets, config, account_id, "example.org")
    zone = Zone(
        mx={
            "gmail.test": [(10, "gmail-smtp-in.l.google.com.")],
            "proton.test": [(10, "mail.protonmail.ch.")],
        },
        a={"gmail-smtp-in.l.google.com": ["127.0.0.1"], "mail.protonmail.ch": ["127.0.0.1"]},
    )
    dns_server, sink = LocalDns(zone), MxSink()
    try:
        mta = Mta(
            runtime,
            MtaSettings(
                helo="postline.test", mx_port=sink.port, tick=0.05, connect_timeout=2, tls=False
            ),
            resolver=MxResolver(dns_server.nameservers, timeout=2),
            schedule=FAST_RETRIES,
            signer=Signer(),
        )
        first_day = datetime.now(UTC).date().isoformat()

        async def send_and_deliver() -> list[str]:
            await runtime.start_background()
            worker = asyncio.create_task(mta.run())
            try:
                com_mail = draft(
                    "shop@example.com",
                    [f"ok{n}@gmail.test" for n in range(1, 7)] + ["unknown@gmail.test"],
                    "orders",
                )
                org_mail = draft(
                    "news@example.org",
                    ["ok7@proton.test", "ok8@proton.test", "ok9@gmail.test"],
                    "news",
                )
                ids = await runtime.acceptor.send(origin(account_id, "transactional"), com_mail)
                ids += await runtime.acceptor.send(origin(account_id, "bulk"), org_mail)
                for _ in range(400):
                    await asyncio.sleep(0.05)
                    if mta.delivered + mta.bounced >= 10:
                        break
                return ids
            finally:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
                await runtime.stop_background()

        message_ids = asyncio.run(send_and_deliver())
        assert (mta.delivered, mta.bounced) == (9, 1)
    finally:
        sink.stop()
        dns_server.stop()
    names = [f"ok{n}" for n in range(1, 7)] + ["unknown", "ok7", "ok8", "ok9"]
    ids = dict(zip(names, message_ids, strict=True))
    store = runtime.store
    for name in ("ok1", "ok1", "ok2", "ok3", "ok4", "ok7", "ok7", "ok9"):  # 6 messages opened
        assert record_open(store, uuid.UUID(ids[name]), "198.51.100.7", "Mozilla/5.0")
    for name in ("ok1", "ok1", "ok2", "ok7"):  # 3 messages clicked
        assert record_click(store, uuid.UUID(ids[name]), "https://x.test/a", None, None)
    assert record_open(store, uuid.UUID(ids["unknown"]), None, None) is not None  # not delivered
    complaint = Complaint(
        message_id=uuid.UUID(ids["ok3"]),
        feedback_type="abuse",
        recipient="ok3@gmail.test",
        reporter="test",
        author="shop@example.com",
        by_message_id=False,
    )
    complain(store, complaint)
    runtime.stats.catch_up()
    days = {first_day, datetime.now(UTC).date().isoformat()}
    live = LiveServer(runtime)
    try:
        yield History(runtime, live, account_id, token, com, org, ids, days)
    finally:
        live.stop()


def test_check_40_through_the_engine(history: History) -> None:
    assert history.stats() == CHECK_40
    assert history.stats()["click_rate"] == round(3 / 9, 4)
    own = history.get("/api/stats")  # the token's account, without its id in the path
    assert (own.status_code, own.json()) == (200, CHECK_40)


def test_grouped_by_domain_category_provider_and_date(history: History) -> None:
    assert history.stats("/domains") == [
        {"sending_domain_id": history.com, "stats": COM},
        {"sending_domain_id": history.org, "stats": ORG},
    ]
    assert history.stats("/categories") == [
        {"category": "news", "stats": ORG},
        {"category": "orders", "stats": COM},
    ]
    assert history.stats("/email_service_providers") == [
        {"email_service_provider": "Google", "stats": GOOGLE},
        {"email_service_provider": "ProtonMail", "stats": PROTON},
    ]
    by_date = history.stats("/date")
    assert by_date == [{"date": by_date[0]["date"], "stats": CHECK_40}]
    assert by_date[0]["date"] in history.days
    for kind in KINDS:  # the unscoped paths answer the same
        assert history.get(f"/api/stats{kind}").json() == history.stats(kind)


def test_filters(history: History) -> None:
    assert history.stats(**{"sending_streams[]": "bulk"}) == ORG
    assert history.stats(**{"categories[]": "orders"}) == COM
    assert history.stats(**{"categories[]": ["orders", "news"]}) == CHECK_40
    assert history.stats(**{"email_service_providers[]": "ProtonMail"}) == PROTON
    assert history.stats(**{"email_service_providers[]": "protonmail"}) == PROTON  # any case
    assert history.stats(**{"sending_domain_ids[]": history.org}) == ORG
    assert history.stats(**{"domain_ids[]": history.org}) == ORG  # the alias
    assert history.stats(**{"sending_domain_ids[]": [history.com, history.org]}) == CHECK_40
    assert history.stats(**{"sending_streams[]": "bulk", "categories[]": "orders"}) == NOTHING
    assert history.stats("/email_service_providers", **{"sending_streams[]": "transactional"}) == [
        {"email_service_provider": "Google", "stats": COM}
    ]
    assert history.stats("/domains", **{"email_service_providers[]": "Yahoo"}) == []
    before = (date.fromisoformat(min(history.days)) - timedelta(days=30)).isoformat()
    yesterday = (date.fromisoformat(min(history.days)) - timedelta(days=1)).isoformat()
    assert history.stats(start_date=before, end_date=yesterday) == NOTHING
    assert history.stats("/date", start_date=before, end_date=yesterday) == []


BAD_QUERIES = [
    ({"start_date": None}, "start_date is required (YYYY-MM-DD)"),
    ({"end_date": None}, "end_date is required (YYYY-MM-DD)"),
    ({"start_date": "2024-1-01"}, "start_date must be a date (YYYY-MM-DD)"),
    ({"end_date": "2024-02-30"}, "end_date must be a date (YYYY-MM-DD)"),
    ({"end_date": "yesterday"}, "end_date must be a date (YYYY-MM-DD)"),
    ({"start_date": "2024-03-02"}, "start_date must not be after end_date"),
    ({"sending_domain_ids[]": "abc"}, "sending_domain_ids[] must be sending domain ids (integers)"),
    ({"domain_ids[]": "999999"}, "Sending domain does not exist: 999999"),
    ({"sending_streams[]": "sandbox"}, "sending_streams[] must be transactional or bulk"),
    (
        {"start_date": "", "sending_streams[]": "x"},
        "start_date is required (YYYY-MM-DD); sending_streams[] must be transactional or bulk",
    ),
]


def test_bad_queries_answer_422(live: LiveServer, account: tuple[int, str]) -> None:
    account_id, token = account
    headers = {"Authorization": f"Bearer {token}"}
    for params, message in BAD_QUERIES:
        for path in (f"/api/accounts/{account_id}/stats", "/api/stats/date"):
            query = {"start_date": "2024-03-01", "end_date": "2024-03-01", **params}
            answer = live.client.get(path, params=query, headers=headers)
            assert (answer.status_code, answer.json()) == (422, {"error": message}), params


def test_access(history: History) -> None:
    runtime, account_id = history.runtime, history.account_id
    other_account = open_account(runtime.store, "Other")
    other = issue_token(runtime.store, other_account, "t", created_by="tests").token
    for kind in KINDS:  # another account's stats are not there for this token
        answer = history.get(f"/api/accounts/{account_id}/stats{kind}", token=other)
        assert answer.status_code == 404
    assert history.get(f"/api/accounts/{other_account}/stats").status_code == 404
    assert history.get("/api/stats", token=other).json() == NOTHING  # its own: nothing sent
    unauthenticated = history.live.client.get("/api/stats", params={"start_date": "2024-01-01"})
    assert unauthenticated.status_code == 401
    assert history.get(f"/api/accounts/{account_id}/stats/nope").status_code == 404

    grant = Grant("domain", history.org, ACCESS_VIEWER)
    viewer = mint(runtime.store, account_id, "org", (grant,), "t")
    runtime.store.save(*viewer.objects)
    assert history.get("/api/stats", token=viewer.secret).json() == ORG  # its domain only
    assert history.get("/api/stats/domains", token=viewer.secret).json() == [
        {"sending_domain_id": history.org, "stats": ORG}
    ]
    refused = history.get("/api/stats", token=viewer.secret, **{"domain_ids[]": history.com})
    assert refused.status_code == 403
    assert refused.json()["errors"].startswith("Access forbidden")
    nothing = mint(runtime.store, account_id, "none", (), "t")
    runtime.store.save(*nothing.objects)
    assert history.get("/api/stats", token=nothing.secret).status_code == 403


def test_rate_limit_is_shared_by_the_stats_paths(history: History) -> None:
    live = LiveServer(history.runtime, stats_rate="10/minute")  # Mailtrap's, as shipped
    headers = {"Authorization": f"Bearer {history.token}"}
    params = {"start_date": min(history.days), "end_date": max(history.days)}
    try:
        for n in range(10):
            path = f"/api/accounts/{history.account_id}/stats{KINDS[n % 5]}"
            assert live.client.get(path, params=params, headers=headers).status_code == 200
        over = live.client.get("/api/stats/date", params=params, headers=headers)
        assert (over.status_code, over.json()) == (429, {"errors": "Rate limit exceeded"})
        other_account = open_account(history.runtime.store, "Other")
        other = issue_token(history.runtime.store, other_account, "t", created_by="t").token
        fresh = live.client.get(
            "/api/stats", params=params, headers={"Authorization": f"Bearer {other}"}
        )
        assert fresh.status_code == 200  # per account
    finally:
        live.stop()


D1, D2, D3 = (datetime(2024, 3, day, 10, tzinfo=UTC) for day in (1, 2, 3))


def test_counts_fall_on_the_days_of_their_events_and_survive_a_rebuild(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    account_id, token = account
    add_domain(runtime.store, runtime.secrets, runtime.domain_config, account_id, "example.com")
    m1, m2, m3, m4 = (uuid.uuid4() for _ in range(4))

    def accept(message_id: uuid.UUID, at: datetime, category: str | None) -> Any:
        return accepted(
            message_id,
            at,
            account_id=account_id,
            token_id=1,
            stream="transactional",
            source="api",
            client_ip=None,
            sender="shop@example.com",
            recipient=f"{message_id.hex}@example.net",
            recipient_kind="to",
            subject="s",
            category=category,
            custom_variables={},
            format="composition",
            head="h",
            body="b",
            size=1,
        )

    def outcome(kind: Any, message_id: uuid.UUID, at: datetime, provider: str | None) -> Any:
        common = {"attempt": 1, "mx": "mx.example.net", "sending_ip": None, "response": "r"}
        if kind is Message.Delivered:
            return follow_up(kind, message_id, 3, at, **common, mailbox_provider=provider, code=250)
        return follow_up(
            kind,
            message_id,
            3,
            at,
            **common,
            mailbox_provider=provider,
            code=550,
            enhanced_code="5.1.1",
            bounce_category="badrecipient",
        )

    def seen(kind: Any, message_id: uuid.UUID, version: int, at: datetime) -> Any:
        if kind is Message.Clicked:
            url = "https://x.test"
            return follow_up(kind, message_id, version, at, url=url, ip=None, user_agent=None)
        return follow_up(kind, message_id, version, at, ip=None, user_agent=None)

    events = [
        accept(m1, D1, "a"),
        accept(m2, D1, None),
        accept(m3, D1, "a"),
        *(follow_up(Message.Queued, m, 2, D1) for m in (m1, m2)),
        follow_up(Message.Rejected, m3, 2, D1, reason="Recipient in suppression list"),
        outcome(Message.Delivered, m1, D1, "Google"),
        accept(m4, D2, "a"),
        follow_up(Message.Queued, m4, 2, D2),
        outcome(Message.Bounced, m4, D2, None),  # no answer: no provider
        outcome(Message.Delivered, m2, D2, "Yahoo"),
        seen(Message.Opened, m1, 4, D2),
        seen(Message.Clicked, m1, 5, D2),
        seen(Message.Opened, m2, 4, D2),
        seen(Message.Opened, m1, 6, D3),  # not its first: no unique open on D3
        seen(Message.Clicked, m1, 7, D3),
    ]
    runtime.committer.submit(events[:6]).result(10)
    runtime.stats.catch_up()  # (later events find their messages in the table)
    runtime.committer.submit(events[6:]).result(10)
    runtime.stats.catch_up()

    live = LiveServer(runtime)
    try:

        def get(kind: str = "", start: str = "2024-03-01", end: str = "2024-03-03") -> Any:
            answer = live.client.get(
                f"/api/stats{kind}",
                params={"start_date": start, "end_date": end},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert answer.status_code == 200, answer.text
            return answer.json()

        def everything() -> list[Any]:
            return [get(kind) for kind in KINDS] + [get("", "2024-03-02", "2024-03-02")]

        # D1: 2 sent (m3 rejected), m1 delivered. D2: m4 sent and bounced, m2 delivered, m1
        # and m2 opened (2 opens of 1 message sent that day: a rate of 2), m1 clicked.
        day_1 = figures(1, 0.5, 0, 0.0, 0, 0.0, 0, 0.0, 0, 0.0)
        day_2 = figures(1, 1.0, 1, 1.0, 2, 2.0, 1, 1.0, 0, 0.0)
        total = figures(2, 0.6667, 1, 0.3333, 2, 0.6667, 1, 0.5, 0, 0.0)
        answers = everything()
        assert answers[0] == total
        (domain,) = answers[1]
        assert domain["stats"] == total
        assert answers[2] == [  # m2 has no category, m3 was rejected
            {"category": "a", "stats": figures(1, 0.5, 1, 0.5, 1, 0.5, 1, 1.0, 0, 0.0)}
        ]
        assert answers[3] == [  # m4 never reached a provider
            {
                "email_service_provider": "Google",
                "stats": figures(1, 1.0, 0, 0.0, 1, 1.0, 1, 1.0, 0, 0.0),
            },
            {
                "email_service_provider": "Yahoo",
                "stats": figures(1, 1.0, 0, 0.0, 1, 1.0, 0, 0.0, 0, 0.0),
            },
        ]
        assert answers[4] == [
            {"date": "2024-03-01", "stats": day_1},
            {"date": "2024-03-02", "stats": day_2},
        ]
        assert answers[5] == day_2
        runtime.stats.rebuild()  # `postline replay`: the same answers from the log alone
        assert everything() == answers
    finally:
        live.stop()


def test_a_deleted_domain_keeps_its_stats(runtime: Runtime, account: tuple[int, str]) -> None:
    account_id, token = account
    config = runtime.domain_config
    first = add_domain(runtime.store, runtime.secrets, config, account_id, "example.com")
    mail = draft("shop@example.com", ["a@example.net"], "c")
    transactional = origin(account_id, "transactional")
    asyncio.run(runtime.acceptor.send(transactional, mail))
    runtime.stats.catch_up()
    delete_domain(runtime.store, account_id, first, "tests")
    second = add_domain(runtime.store, runtime.secrets, config, account_id, "example.com")
    asyncio.run(runtime.acceptor.send(transactional, draft("shop@example.com", ["b@x.net"], "c")))
    asyncio.run(runtime.acceptor.send(transactional, draft("shop@example.com", ["c@x.net"], "c")))
    runtime.stats.catch_up()
    live = LiveServer(runtime)
    try:
        today = datetime.now(UTC).date()
        params = {
            "start_date": (today - timedelta(days=1)).isoformat(),
            "end_date": (today + timedelta(days=1)).isoformat(),
        }
        headers = {"Authorization": f"Bearer {token}"}
        answer = live.client.get("/api/stats/domains", params=params, headers=headers)
        # Nothing delivered yet, but both domains sent: each is listed under its own id.
        assert answer.json() == [
            {"sending_domain_id": first, "stats": NOTHING},
            {"sending_domain_id": second, "stats": NOTHING},
        ]
        old = live.client.get(
            "/api/stats/domains", params={**params, "domain_ids[]": first}, headers=headers
        )
        assert [g["sending_domain_id"] for g in old.json()] == [first]
    finally:
        live.stop()
    with runtime.store.db.transaction(commit=False) as cursor:
        cursor.execute(
            runtime.store.db.prepare(
                "SELECT domain_id, SUM(sent) AS sent FROM {stats_counters} GROUP BY domain_id"
                " ORDER BY domain_id"
            )
        )
        assert [(r["domain_id"], r["sent"]) for r in cursor.fetchall()] == [(first, 1), (second, 2)]
