"""The Mailtrap-compatible sending API over real HTTP, on both stores."""

import uuid

import httpx
import pytest

from engine.accounts import issue_token, open_account
from tests.support.live import LiveServer

MESSAGE = {
    "from": {"email": "hello@example.com", "name": "Example"},
    "to": [{"email": "a@example.com"}, {"email": "b@example.com", "name": "B"}],
    "cc": [{"email": "c@example.com"}],
    "bcc": [{"email": "d@example.com"}],
    "subject": "Welcome!",
    "text": "Thanks for signing up.",
    "html": "<h1>Welcome!</h1>",
    "category": "Onboarding",
    "custom_variables": {"user_id": "42", "plan": 3},
    "headers": {"X-Message-Source": "tests"},
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log(live: LiveServer, token: str, message_id: str) -> httpx.Response:
    return live.client.get(f"/api/email_logs/{message_id}", headers={"Api-Token": token})


def test_send_returns_one_id_per_recipient_and_the_log_shows_them(
    live: LiveServer, account: tuple[int, str]
) -> None:
    account_id, token = account
    reply = live.client.post("/api/send", json=MESSAGE, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    ids = body["message_ids"]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert all(str(uuid.UUID(i)) == i for i in ids)
    entries = [log(live, token, i).json() for i in ids]
    assert [e["to"] for e in entries] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
    ]
    first = entries[0]
    assert first["status"] == "enqueued"
    assert (first["from"], first["subject"], first["category"]) == (
        "hello@example.com",
        "Welcome!",
        "Onboarding",
    )
    assert first["custom_variables"] == {"user_id": "42", "plan": 3}
    assert first["sending_stream"] == "transactional"
    assert first["client_ip"] == "127.0.0.1"
    assert [e["event_type"] for e in first["events"]] == ["sending"]
    sdk_path = live.client.get(
        f"/api/accounts/{account_id}/email_logs/{ids[0]}", headers=bearer(token)
    )
    same = sdk_path.json()
    # each answer signs its raw-message link afresh (it carries the time): the rest is equal
    assert same.pop("raw_message_url").startswith(f"{live.url}/api/email_logs/raw/")
    first.pop("raw_message_url")
    assert same == first


def test_batch_answers_per_request_and_shares_the_base(
    live: LiveServer, account: tuple[int, str]
) -> None:
    _, token = account
    batch = {
        "base": {
            "from": {"email": "news@example.com"},
            "subject": "Monthly news",
            "text": "Hello",
            "category": "newsletter",
        },
        "requests": [
            {"to": [{"email": "one@example.com"}]},
            {
                "to": [{"email": "two@example.com"}],
                "cc": [{"email": "cc@example.com"}],
                "subject": "Override",
            },
            {"to": []},
            {"to": [{"email": "bad@"}]},
        ],
    }
    reply = live.client.post("/api/batch", json=batch, headers=bearer(token))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["success"] is True
    assert body["errors"] == []
    results = body["responses"]
    assert [r["success"] for r in results] == [True, True, False, False]
    assert len(results[0]["message_ids"]) == 1
    assert len(results[1]["message_ids"]) == 2
    assert results[2]["errors"] == ["'to', 'cc' or 'bcc' address is required"]
    assert results[3]["errors"] == ["'to' address 'bad@' is invalid"]
    second = log(live, token, results[1]["message_ids"][1]).json()
    assert (second["to"], second["subject"], second["category"]) == (
        "cc@example.com",
        "Override",
        "newsletter",
    )


def test_batch_limits_and_shape(live: LiveServer, account: tuple[int, str]) -> None:
    _, token = account
    too_many = {
        "base": {"from": {"email": "a@example.com"}, "subject": "s", "text": "t"},
        "requests": [{"to": [{"email": "x@example.com"}]}] * 501,
    }
    reply = live.client.post("/api/batch", json=too_many, headers=bearer(token))
    assert (reply.status_code, reply.json()) == (
        400,
        {"success": False, "errors": ["'requests' must not contain more than 500 items"]},
    )
    reply = live.client.post("/api/batch", json={"base": {}}, headers=bearer(token))
    assert reply.json() == {"success": False, "errors": ["'requests' is required"]}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nope"}, 401),
        ({"Api-Token": "nope"}, 401),
        ({"Authorization": "Basic abc"}, 401),
    ],
)
def test_bad_credentials_are_refused_before_the_body_is_read(
    live: LiveServer, headers: dict[str, str], status: int
) -> None:
    reply = live.client.post("/api/send", content=b"{not json", headers=headers)
    assert (reply.status_code, reply.json()) == (
        status,
        {"success": False, "errors": ["Unauthorized"]},
    )
    account_api = live.client.get(f"/api/email_logs/{uuid.uuid4()}", headers=headers)
    assert (account_api.status_code, account_api.json()) == (401, {"error": "Incorrect API token"})


def test_api_token_header_is_accepted(live: LiveServer, account: tuple[int, str]) -> None:
    _, token = account
    reply = live.client.post("/api/send", json=MESSAGE, headers={"Api-Token": token})
    assert reply.status_code == 200


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"{bad", "request body is not valid JSON: object keys must be strings (byte 1)"),
        (b"", "request body is required"),
        (b"[]", "request body must be a JSON object (Expected `object`, got `array`)"),
        (b'{"to": "a@example.com"}', "invalid 'to': expected `array`, got `str`"),
        (b'{"from": {"email": 5}}', "invalid 'from.email': expected `str`, got `int`"),
        (
            b'{"custom_variables": {"a": {"b": 1}}}',
            "invalid 'custom_variables[...]': expected `bool | int | float | str`, got `object`",
        ),
    ],
)
def test_malformed_bodies_get_specific_errors(
    live: LiveServer, account: tuple[int, str], content: bytes, error: str
) -> None:
    reply = live.client.post("/api/send", content=content, headers=bearer(account[1]))
    assert (reply.status_code, reply.json()) == (400, {"success": False, "errors": [error]})


def test_validation_errors_change_nothing(live: LiveServer, account: tuple[int, str]) -> None:
    head = live.runtime.store.head()
    reply = live.client.post(
        "/api/send",
        json={**MESSAGE, "subject": "a\r\nBcc: x@example.com"},
        headers=bearer(account[1]),
    )
    assert reply.json() == {"success": False, "errors": ["'subject' must not contain CR or LF"]}
    assert live.runtime.store.head() == head


def test_oversized_bodies_answer_413(live: LiveServer, account: tuple[int, str]) -> None:
    padding = "x" * (21 * 1024 * 1024)
    reply = live.client.post(
        "/api/send", json={**MESSAGE, "text": padding}, headers=bearer(account[1])
    )
    assert reply.status_code == 413
    assert reply.json() == {"success": False, "errors": ["request body is larger than 20 MB"]}
    big = {**MESSAGE, "text": "y" * (11 * 1024 * 1024)}
    reply = live.client.post("/api/send", json=big, headers=bearer(account[1]))
    assert (reply.status_code, reply.json()) == (
        413,
        {"success": False, "errors": ["message size exceeds the limit of 10 MB"]},
    )


def test_bulk_stream_by_path_and_by_host(live: LiveServer, account: tuple[int, str]) -> None:
    _, token = account
    by_path = live.client.post("/bulk/api/send", json=MESSAGE, headers=bearer(token))
    by_host = live.client.post(
        "/api/send", json=MESSAGE, headers={**bearer(token), "Host": "bulk.postline.test"}
    )
    for reply in (by_path, by_host):
        message_id = reply.json()["message_ids"][0]
        assert log(live, token, message_id).json()["sending_stream"] == "bulk"


def test_one_account_never_sees_another_accounts_messages(
    live: LiveServer, account: tuple[int, str]
) -> None:
    account_id, token = account
    other = open_account(live.runtime.store, "other")
    other_token = issue_token(live.runtime.store, other, "t", created_by="tests").token
    message_id = live.client.post("/api/send", json=MESSAGE, headers=bearer(token)).json()[
        "message_ids"
    ][0]
    assert log(live, other_token, message_id).status_code == 404
    cross = live.client.get(
        f"/api/accounts/{account_id}/email_logs/{message_id}", headers=bearer(other_token)
    )
    assert (cross.status_code, cross.json()) == (404, {"error": "Not Found"})
    assert log(live, token, "not-a-uuid").status_code == 404
    assert log(live, token, str(uuid.uuid4())).status_code == 404


def test_unknown_routes_and_methods(live: LiveServer) -> None:
    assert live.client.get("/nope").json() == {"error": "Not Found"}
    reply = live.client.delete("/api/send")
    assert (reply.status_code, reply.json()) == (
        405,
        {"success": False, "errors": ["method DELETE is not allowed here"]},
    )


def test_openapi_and_offline_docs(live: LiveServer) -> None:
    spec = live.client.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert {"/api/send", "/api/batch", "/bulk/api/send", "/api/email_logs/{message_id}"} <= spec[
        "paths"
    ].keys()
    docs = live.client.get("/docs")
    assert docs.status_code == 200
    assert "/static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert live.client.get("/static/swagger-ui-bundle.js").status_code == 200


def test_health_endpoints(live: LiveServer) -> None:
    assert live.client.get("/healthz").json() == {"status": "ok"}
    ready = live.client.get("/readyz").json()
    assert ready["status"] == "ready"
