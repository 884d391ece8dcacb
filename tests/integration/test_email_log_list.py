"""The email-log list: every filter and operator, the cursor, domain tokens, the raw message."""

import asyncio
import time
import uuid
from datetime import UTC, datetime
from email import message_from_bytes
from typing import Any

import msgspec
import pytest

from domain.log_filters import parse_filters
from domain.message import Message, follow_up
from domain.submission import Draft
from engine.accept import Origin, RawSubmission
from engine.accounts import Principal, account_admin, issue_token, open_account
from engine.domains import add_domain
from engine.opt_outs import unsubscribe
from engine.runtime import Runtime
from engine.tracking import record_click, record_open
from projections.email_log_list import list_messages
from tests.support.live import LiveServer

GOOGLE = {"mx": "gmail-smtp-in.l.google.com", "mailbox_provider": "Google"}
YAHOO = {"mx": "mta5.am0.yahoodns.net", "mailbox_provider": "Yahoo"}
OTHER = {"mx": "mx.example.net", "mailbox_provider": "Other"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class History:
    """Four messages of one account (and one of another), built through the engine:

    m1 example.org -> alice@gmail.test, transactional "welcome": delivered, opened twice, clicked
    m2 example.org -> bob@yahoo.test, transactional "billing": soft bounce, then bounced
    m3 example.com -> carol@example.net, bulk "news", no subject: still enqueued
    m4 example.com -> dave@example.net, bulk "news": delivered, then unsubscribed
    """

    def __init__(self, runtime: Runtime, account: tuple[int, str]) -> None:
        self.runtime = runtime
        self.account, self.token = account
        add = runtime.store, runtime.secrets, runtime.domain_config, self.account
        self.org = add_domain(*add, "example.org")
        self.com = add_domain(*add, "example.com")
        self.m1 = self.send("a@example.org", "alice@gmail.test", "Welcome: deals-1000", "welcome")
        self.m2 = self.send("a@example.org", "bob@yahoo.test", "Invoice 7", "billing")
        self.m3 = self.send("news@example.com", "carol@example.net", None, "news", "bulk")
        self.m4 = self.send("news@example.com", "dave@example.net", "Deals_100%", "news", "bulk")
        other = open_account(runtime.store, "Other")
        self.theirs = self.send("a@example.org", "eve@example.net", "Theirs", None, account=other)
        self.their_token = issue_token(runtime.store, other, "theirs", created_by="t").token
        now = datetime.now(UTC)
        ip = {"sending_ip": "192.0.2.1"}
        fail = {"bounce_category": "badrecipient", "enhanced_code": "5.1.1"}
        events = [follow_up(Message.Queued, uuid.UUID(m), 2, now) for m in (self.m1, self.m2)]
        events += [
            follow_up(Message.Queued, uuid.UUID(self.m4), 2, now),
            self.outcome(Message.Delivered, self.m1, 3, **GOOGLE, **ip, code=250, response="Ok"),
            self.outcome(
                Message.SoftBounced,
                self.m2,
                3,
                **OTHER,
                **ip,
                code=451,
                enhanced_code="4.7.1",
                response="4.7.1 Try later",
                bounce_category="greylisting",
                next_attempt_at=now,
            ),
            self.outcome(
                Message.Bounced,
                self.m2,
                4,
                **YAHOO,
                **ip,
                code=550,
                response="User unknown",
                **fail,
            ),
            self.outcome(
                Message.Delivered,
                self.m4,
                3,
                **OTHER,
                sending_ip="198.51.100.9",
                code=250,
                response="Ok",
            ),
        ]
        runtime.committer.submit(events).result(10)
        for _ in range(2):
            record_open(runtime.store, uuid.UUID(self.m1), "203.0.113.5", "Mail/1.0")
        record_click(runtime.store, uuid.UUID(self.m1), "https://example.org/x", None, None)
        unsubscribe(runtime.store, uuid.UUID(self.m4), "203.0.113.6", None)
        runtime.email_logs.catch_up()
        runtime.domains.catch_up()

    def send(
        self,
        sender: str,
        to: str,
        subject: str | None,
        category: str | None,
        stream: str = "transactional",
        account: int | None = None,
    ) -> str:
        account = account or self.account
        time.sleep(0.002)  # each in a millisecond of its own: the API shows sent_at to the ms
        origin = Origin(
            Principal(1, account, "t", account_admin(account)), stream, "api", "10.0.0.7"
        )
        if subject is None:  # only relayed mail can have none
            data = f"From: {sender}\r\nTo: {to}\r\nX-MT-Category: {category}\r\n\r\nx\r\n"
            raw = RawSubmission(sender, (to,), data.encode(), "client", "mx", True, False, True)
            return asyncio.run(self.runtime.acceptor.relay(origin, raw))[0]
        request: dict[str, Any] = {
            "from": {"email": sender},
            "to": [{"email": to}],
            "subject": subject,
            "text": "x",
        }
        if category is not None:
            request["category"] = category
        draft = msgspec.convert(request, Draft)
        return asyncio.run(self.runtime.acceptor.send(origin, draft))[0]

    @staticmethod
    def outcome(kind: type, message_id: str, version: int, **fields: Any) -> Any:
        return follow_up(
            kind, uuid.UUID(message_id), version, datetime.now(UTC), attempt=1, **fields
        )


@pytest.fixture
def history(runtime: Runtime, account: tuple[int, str]) -> History:
    return History(runtime, account)


def test_every_filter_and_operator(history: History, live: LiveServer) -> None:
    h = history
    path = f"/api/accounts/{h.account}/email_logs"

    def ids(**params: Any) -> list[str]:
        query = {}
        for field, (operator, value) in params.items():
            key = f"filters[{field.rstrip('_')}]"
            query[f"{key}[operator]"] = operator
            if value is not None:
                query[f"{key}[value]" + ("[]" if isinstance(value, list) else "")] = value
        answer = live.client.get(path, params=query, headers=bearer(h.token))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["total_count"] == len(body["messages"])
        return [m["message_id"] for m in body["messages"]]

    assert ids() == [h.m4, h.m3, h.m2, h.m1]  # newest first, another account's never
    assert ids(to=("ci_equal", "ALICE@gmail.test")) == [h.m1]
    assert ids(to=("ci_not_equal", ["alice@gmail.test", "bob@yahoo.test"])) == [h.m4, h.m3]
    assert ids(to=("ci_contain", "EXAMPLE.net")) == [h.m4, h.m3]
    assert ids(from_=("ci_not_contain", "news@")) == [h.m2, h.m1]
    assert ids(subject=("empty", None)) == [h.m3]
    assert ids(subject=("not_empty", None)) == [h.m4, h.m2, h.m1]
    assert ids(subject=("ci_contain", "deals_100%")) == [h.m4]  # "_" and "%" are text
    assert ids(subject=("ci_not_contain", "deals")) == [h.m3, h.m2]
    assert ids(status=("equal", ["delivered", "opted_out"])) == [h.m4, h.m1]
    assert ids(status=("not_equal", "enqueued")) == [h.m4, h.m2, h.m1]
    assert ids(events=("include_event", "soft_bounce")) == [h.m2]
    assert ids(events=("include_event", ["click", "unsubscribe"])) == [h.m4, h.m1]
    assert ids(events=("not_include_event", "delivery")) == [h.m3, h.m2]
    assert ids(opens_count=("greater_than", 1)) == [h.m1]
    assert ids(clicks_count=("equal", 0)) == [h.m4, h.m3, h.m2]
    assert ids(clicks_count=("less_than", 1)) == [h.m4, h.m3, h.m2]
    assert ids(client_ip=("equal", "10.0.0.7")) == [h.m4, h.m3, h.m2, h.m1]
    assert ids(sending_ip=("contain", "192.0.2")) == [h.m2, h.m1]
    assert ids(sending_ip=("not_equal", "192.0.2.1")) == [h.m4, h.m3]
    assert ids(sending_ip=("not_contain", "198.51")) == [h.m3, h.m2, h.m1]
    assert ids(email_service_provider=("equal", "Google")) == [h.m1]
    assert ids(email_service_provider=("not_equal", "Google")) == [h.m4, h.m3, h.m2]
    assert ids(recipient_mx=("ci_contain", "YAHOODNS")) == [h.m2]  # the latest attempt's
    assert ids(email_service_provider_response=("ci_contain", "user unknown")) == [h.m2]
    assert ids(category=("equal", ["welcome", "billing"])) == [h.m2, h.m1]
    assert ids(category=("not_equal", "news")) == [h.m2, h.m1]
    assert ids(sending_domain_id=("equal", h.com)) == [h.m4, h.m3]
    assert ids(domain_id=("not_equal", h.com)) == [h.m2, h.m1]
    assert ids(sending_stream=("equal", "bulk"), status=("equal", "opted_out")) == [h.m4]
    assert ids(nonsense=("whatever", "x")) == [h.m4, h.m3, h.m2, h.m1]  # unknown: ignored

    sent = {
        m["message_id"]: m["sent_at"]
        for m in live.client.get(path, headers=bearer(h.token)).json()["messages"]
    }
    dates = {"filters[sent_after]": sent[h.m2], "filters[sent_before]": sent[h.m3]}
    answer = live.client.get(path, params=dates, headers=bearer(h.token)).json()
    assert [m["message_id"] for m in answer["messages"]] == [h.m3, h.m2]


def test_bad_filters_answer_422_and_name_the_problem(history: History, live: LiveServer) -> None:
    path = f"/api/accounts/{history.account}/email_logs"
    cases = {
        "filters[status][operator]=ci_contain&filters[status][value]=x": "[status][operator]",
        "filters[status][operator]=equal&filters[status][value]=lost": "'lost' is not one of",
        "filters[opens_count][operator]=equal&filters[opens_count][value]=many": "whole number",
        "filters[to][operator]=ci_equal": "filters[to][value] is missing",
        "filters[to][value]=a@x": "no operator",
        "filters[sent_after]=yesterday": "ISO 8601",
        "search_after=not-an-id": "search_after must be a message id",
        f"search_after={uuid.uuid4()}": "there is no message",
        f"search_after={history.theirs}": "there is no message",
    }
    for query, problem in cases.items():
        answer = live.client.get(f"{path}?{query}", headers=bearer(history.token))
        assert answer.status_code == 422, query
        assert problem in answer.json()["error"], (query, answer.json())


def test_pages_follow_the_cursor(history: History, runtime: Runtime, live: LiveServer) -> None:
    db, h = runtime.store.db, history
    query = parse_filters([])
    first = list_messages(db, h.account, query, limit=3)
    assert [m["message_id"] for m in first.messages] == [h.m4, h.m3, h.m2]
    assert (first.total_count, first.next_page_cursor) == (4, h.m2)
    second = list_messages(db, h.account, query, search_after=h.m2, limit=3)
    assert [m["message_id"] for m in second.messages] == [h.m1]
    assert second.next_page_cursor is None
    path = f"/api/accounts/{h.account}/email_logs"
    answer = live.client.get(path, params={"search_after": h.m3}, headers=bearer(h.token)).json()
    assert [m["message_id"] for m in answer["messages"]] == [h.m2, h.m1]
    assert (answer["total_count"], answer["next_page_cursor"]) == (4, None)


def test_accounts_and_domain_tokens_see_their_own(
    history: History, runtime: Runtime, live: LiveServer
) -> None:
    h = history
    path = f"/api/accounts/{h.account}/email_logs"
    assert live.client.get(path, headers=bearer(h.their_token)).status_code == 404
    theirs = live.client.get("/api/email_logs", headers=bearer(h.their_token)).json()
    assert [m["message_id"] for m in theirs["messages"]] == [h.theirs]
    theirs_m1 = live.client.get(f"/api/email_logs/{h.m1}", headers=bearer(h.their_token))
    assert theirs_m1.status_code == 404

    grant = [{"resource_type": "domain", "resource_id": h.com, "access_level": 10}]
    minted = live.client.post(
        f"/api/accounts/{h.account}/api_tokens",
        json={"name": "com", "resources": grant},
        headers=bearer(h.token),
    )
    viewer = minted.json()["token"]
    seen = live.client.get(path, headers=bearer(viewer)).json()
    assert [m["message_id"] for m in seen["messages"]] == [h.m4, h.m3]
    assert {m["sending_domain_id"] for m in seen["messages"]} == {h.com}
    assert live.client.get(f"{path}/{h.m4}", headers=bearer(viewer)).status_code == 200
    assert live.client.get(f"{path}/{h.m1}", headers=bearer(viewer)).status_code == 404


def test_the_detail_links_to_the_raw_message(
    history: History, runtime: Runtime, live: LiveServer
) -> None:
    h = history
    detail = live.client.get(f"/api/email_logs/{h.m1}", headers=bearer(h.token)).json()
    assert (detail["opens_count"], detail["clicks_count"]) == (2, 1)
    assert [e["event_type"] for e in detail["events"]] == [
        "sending",
        "delivery",
        "open",
        "open",
        "click",
    ]
    assert detail["events"][-1]["details"] == {
        "click_url": "https://example.org/x",
        "web_ip_address": None,
    }
    assert detail["sending_domain_id"] == h.org
    url = detail["raw_message_url"]
    assert url.startswith(live.url)
    raw = live.client.get(url)  # no token: the link is the permission
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("message/rfc822")
    parsed = message_from_bytes(raw.content)
    assert (parsed["Subject"], parsed["To"]) == ("Welcome: deals-1000", "alice@gmail.test")
    token = url.rsplit("/", 1)[1]
    assert live.client.get(url[: -len(token)] + token[:-2] + "xx").status_code == 404
    runtime.raw_links.max_age = -1
    expired = live.client.get(url)
    assert expired.status_code == 410
    assert "expired" in expired.json()["error"]
