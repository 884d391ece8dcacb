"""Losing PostgreSQL mid-flight: HTTP 503 / SMTP 451, nothing half-stored, recovery after."""

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from engine.accounts import issue_token, open_account
from engine.runtime import Runtime
from engine.settings import store_url
from tests.support.live import LiveServer
from tests.support.postgres import fresh_schema, server_url
from tests.support.smtp import Certificates, LiveSmtp
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

MESSAGE = {
    "from": {"email": "a@example.com"},
    "to": [{"email": "b@example.com"}],
    "subject": "Hi",
    "text": "x",
}


@pytest.fixture
def through_proxy(tmp_path: Path) -> Iterator[tuple[TcpProxy, LiveServer, str]]:
    target = urlsplit(server_url())
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5432))
    with fresh_schema(server_url()) as direct:
        parts = urlsplit(direct)
        credentials = parts.netloc.rpartition("@")[0]
        via = parts._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}").geturl()
        runtime = Runtime(store_url(via, tmp_path), data_dir=tmp_path, sender_policy="any")
        runtime.start()
        account = open_account(runtime.store, "a")
        token = issue_token(runtime.store, account, "t", created_by="tests").token
        live = LiveServer(runtime)
        try:
            yield proxy, live, token
        finally:
            live.stop()
            proxy.restore()
            runtime.close()
            proxy.close()


def test_outage_answers_503_and_stores_nothing(
    through_proxy: tuple[TcpProxy, LiveServer, str],
) -> None:
    proxy, live, token = through_proxy
    headers = {"Authorization": f"Bearer {token}"}
    assert live.client.post("/api/send", json=MESSAGE, headers=headers).status_code == 200
    head = live.runtime.store.head()

    proxy.cut()
    reply = live.client.post("/api/send", json=MESSAGE, headers=headers)
    assert reply.status_code == 503
    body = reply.json()
    assert body["success"] is False
    assert body["errors"] == [
        "Service unavailable: the message store cannot be reached; retry later"
    ]
    assert body["request_id"] == reply.headers["X-Request-Id"]
    assert reply.headers["Retry-After"] == "5"
    assert "Traceback" not in reply.text
    assert live.client.get("/readyz").status_code == 503

    proxy.restore()
    deadline = time.monotonic() + 30
    while (
        reply := live.client.post("/api/send", json=MESSAGE, headers=headers)
    ).status_code != 200:
        assert reply.status_code == 503
        assert time.monotonic() < deadline
        time.sleep(0.5)
    ids = reply.json()["message_ids"]
    log = live.client.get(f"/api/email_logs/{ids[0]}", headers=headers)
    assert log.status_code == 200
    # Two messages were acknowledged (one before, one after); the refused ones left no trace.
    assert live.runtime.store.head() > head
    db = live.runtime.store.db
    with db.transaction(commit=False) as cursor:
        cursor.execute(db.prepare("SELECT count(*) AS n FROM {email_logs}"))
        assert cursor.fetchone()["n"] == 2


def test_smtp_outage_answers_451_and_stores_nothing(
    through_proxy: tuple[TcpProxy, LiveServer, str], tmp_path: Path
) -> None:
    proxy, live, token = through_proxy
    relay = LiveSmtp(live.runtime, Certificates(tmp_path))
    data = b"Subject: outage\r\n\r\nhello\r\n"

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", relay.port(), timeout=30) as client:
            client.login("api", token)
            client.mail("a@example.com")
            client.rcpt("b@example.com")
            return client.data(data)

    try:
        assert send()[0] == 250  # authenticated once: the token is cached from here on
        head = live.runtime.store.head()
        proxy.cut()
        code, reply = send()
        assert (code, reply) == (
            451,
            b"4.3.0 Temporary failure: message store unavailable, try again later",
        )
        proxy.restore()
        deadline = time.monotonic() + 30
        while (result := send())[0] != 250:
            assert result[0] == 451
            assert time.monotonic() < deadline
            time.sleep(0.5)
        db = live.runtime.store.db
        assert live.runtime.store.head() > head
        live.runtime.email_logs.catch_up()
        with db.transaction(commit=False) as cursor:
            cursor.execute(
                db.prepare("SELECT count(*) AS n FROM {email_logs} WHERE subject = ?"),
                ("outage",),
            )
            assert cursor.fetchone()["n"] == 2  # the refused message left no trace
    finally:
        relay.stop()
