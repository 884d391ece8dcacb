"""Losing PostgreSQL mid-flight: 503 with a request id, nothing half-stored, recovery after."""

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
        runtime = Runtime(store_url(via, tmp_path))
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
