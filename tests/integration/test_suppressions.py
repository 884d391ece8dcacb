"""The suppression-list API: add, list with filters and cursor, reactivate, isolation."""

from engine.accounts import issue_token, open_account
from engine.runtime import Runtime
from tests.support.live import LiveServer


def add_domain_over_http(live: LiveServer, account_id: int, headers: dict[str, str]) -> int:
    """The account's sending domain example.org, added through the API; its id."""
    created = live.client.post(
        f"/api/accounts/{account_id}/sending_domains",
        json={"sending_domain": {"domain_name": "example.org"}},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    return int(created.json()["id"])


def test_add_list_page_and_reactivate(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, token = account
    headers = {"Authorization": f"Bearer {token}"}
    domain_id = add_domain_over_http(live, owner, headers)
    base = f"/api/accounts/{owner}/suppressions"
    ids = []
    for n in range(3):
        added = live.client.post(
            base,
            json={
                "email": f"R{n}@example.net",
                "domain_id": domain_id,
                "sending_stream": "bulk",
            },
            headers=headers,
        )
        assert added.status_code == 201, added.text
        record = added.json()["data"]
        assert (record["type"], record["domain_name"], record["sending_stream"]) == (
            "manual import",
            "example.org",
            "bulk",
        )
        ids.append(record["id"])
    again = live.client.post(
        base,
        json={"email": "r0@example.net", "domain_id": domain_id, "sending_stream": "bulk"},
        headers=headers,
    )
    assert again.json()["data"]["id"] == ids[0]  # the same address in the same scope: one record

    listed = live.client.get(base, headers=headers).json()
    assert [r["id"] for r in listed] == ids
    by_email = live.client.get(base, params={"email": "r1@EXAMPLE.net"}, headers=headers).json()
    assert [r["email"] for r in by_email] == ["R1@example.net"]
    after = live.client.get(base, params={"last_id": ids[0]}, headers=headers).json()
    assert [r["id"] for r in after] == ids[1:]
    future = live.client.get(
        base, params={"start_time": "2999-01-01T00:00:00Z"}, headers=headers
    ).json()
    assert future == []

    removed = live.client.delete(f"{base}/{ids[1]}", headers=headers)
    assert (removed.status_code, removed.json()["id"]) == (200, ids[1])
    assert [r["id"] for r in live.client.get(base, headers=headers).json()] == [ids[0], ids[2]]
    assert live.client.delete(f"{base}/{ids[1]}", headers=headers).status_code == 404


def test_bad_input_and_another_account(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, token = account
    headers = {"Authorization": f"Bearer {token}"}
    domain_id = add_domain_over_http(live, owner, headers)
    base = f"/api/accounts/{owner}/suppressions"
    refused = live.client.post(
        base,
        json={"email": "nope", "domain_id": 999, "sending_stream": "fast", "type": "odd"},
        headers=headers,
    )
    assert refused.status_code == 422
    for reason in ("email must be", "sending_stream must be", "type must be"):
        assert reason in refused.json()["error"]
    unknown_domain = live.client.post(
        base,
        json={"email": "a@example.net", "domain_id": 999, "sending_stream": "any"},
        headers=headers,
    )
    assert "domain_id must be" in unknown_domain.json()["error"]
    record = live.client.post(
        base,
        json={"email": "a@example.net", "domain_id": domain_id, "sending_stream": "any"},
        headers=headers,
    ).json()["data"]

    other = open_account(runtime.store, "Other")
    theirs = {
        "Authorization": f"Bearer {issue_token(runtime.store, other, 't', created_by='t').token}"
    }
    other_base = f"/api/accounts/{other}/suppressions"
    assert live.client.get(other_base, headers=theirs).json() == []
    assert live.client.get(base, headers=theirs).status_code == 404
    assert live.client.delete(f"{other_base}/{record['id']}", headers=theirs).status_code == 404
    with_my_domain = live.client.post(
        other_base,
        json={"email": "b@example.net", "domain_id": domain_id, "sending_stream": "any"},
        headers=theirs,
    )
    assert with_my_domain.status_code == 422
    assert [r["id"] for r in live.client.get(base, headers=headers).json()] == [record["id"]]


def test_more_than_ten_calls_a_minute_answer_429(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    owner, token = account
    headers = {"Authorization": f"Bearer {token}"}
    live = LiveServer(runtime, suppression_rate="10/minute")  # Mailtrap's limit, as shipped
    try:
        base = f"/api/accounts/{owner}/suppressions"
        answers = [live.client.get(base, headers=headers).status_code for _ in range(11)]
        assert answers == [200] * 10 + [429]
        limited = live.client.get(base, headers=headers)
        assert limited.json() == {"errors": "Rate limit exceeded"}
        other = open_account(runtime.store, "Other")
        theirs = issue_token(runtime.store, other, "t", created_by="t").token
        fine = live.client.get(f"/api/accounts/{other}/suppressions", headers={"Api-Token": theirs})
        assert fine.status_code == 200  # counted per account
    finally:
        live.stop()
