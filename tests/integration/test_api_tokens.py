"""The API-token API: create, list, get, reset, delete; permissions; domain tokens; isolation."""

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.accounts import DomainTokens, TokenRefused
from domain.ids import entity_id
from engine.accounts import Authenticator, Principal, issue_token, open_account
from engine.domains import add_domain
from engine.errors import Conflict
from engine.runtime import Runtime
from engine.store import EventStore
from engine.tokens import DEFAULT, create_token, delete_token
from tests.support.live import LiveServer


def viewer_of(account_id: int) -> list[dict[str, int | str]]:
    return [{"resource_type": "account", "resource_id": account_id, "access_level": 10}]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def mail(sender: str) -> dict[str, Any]:
    return {
        "from": {"email": sender},
        "to": [{"email": "a@example.net"}],
        "subject": "s",
        "text": "t",
    }


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_list_get_reset_and_delete(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    base = f"/api/accounts/{owner}/api_tokens"
    resources = [{"resource_type": "account", "resource_id": owner, "access_level": 10}]
    created = live.client.post(
        base, json={"name": "reports", "resources": resources}, headers=bearer(admin)
    )
    assert created.status_code == 200, created.text
    viewer = created.json()
    assert len(viewer["token"]) == 32
    assert viewer["last_4_digits"] == viewer["token"][-4:]
    assert (viewer["name"], viewer["resources"]) == ("reports", resources)
    year = when(viewer["expires_at"]) - datetime.now(UTC)
    assert timedelta(days=364) < year <= timedelta(days=365)

    listed = live.client.get(base, headers=bearer(admin)).json()
    assert [t["name"] for t in listed] == ["test", "reports"]
    assert all("token" not in t for t in listed)
    one = live.client.get(f"{base}/{viewer['id']}", headers=bearer(admin)).json()
    assert one == {k: v for k, v in viewer.items() if k != "token"}

    # a viewer reads, but changes nothing, sends nothing and sees only itself
    as_viewer = bearer(viewer["token"])
    assert live.client.get(f"/api/accounts/{owner}/suppressions", headers=as_viewer).is_success
    refused = live.client.post(
        f"/api/accounts/{owner}/sending_domains",
        json={"sending_domain": {"domain_name": "example.org"}},
        headers=as_viewer,
    )
    assert refused.status_code == 403
    assert refused.json()["errors"].startswith("Access forbidden")
    no_new = live.client.post(base, json={"name": "x", "resources": resources}, headers=as_viewer)
    assert no_new.status_code == 403  # a viewer administers nothing it could grant
    assert [t["id"] for t in live.client.get(base, headers=as_viewer).json()] == [viewer["id"]]
    send = live.client.post("/api/send", json=mail("me@example.com"), headers=as_viewer)
    assert send.status_code == 401
    assert send.json()["errors"][0] == "Unauthorized"

    reset = live.client.post(f"{base}/{viewer['id']}/reset", headers=bearer(admin))
    assert reset.status_code == 200, reset.text
    successor = reset.json()
    assert successor["name"] == f"reports {successor['id']}"
    assert successor["resources"] == resources
    auth = Authenticator(runtime.store, ttl=0)
    old = auth.authenticate(viewer["token"])
    assert old is not None
    assert old.expires_at is not None
    assert timedelta(hours=11) < old.expires_at - datetime.now(UTC) <= timedelta(hours=12)
    assert auth.authenticate(successor["token"]) is not None
    again = live.client.post(f"{base}/{viewer['id']}/reset", headers=bearer(admin))
    assert again.status_code == 422
    assert "already been reset" in again.json()["error"]
    # a token cannot create one that outlives it
    month = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    admin_grant = [{"resource_type": "account", "resource_id": owner, "access_level": 100}]
    temporary = live.client.post(
        base,
        json={"name": "ci", "resources": admin_grant, "expires_at": month},
        headers=bearer(admin),
    ).json()
    as_temporary = bearer(temporary["token"])
    forever = live.client.post(
        base, json={"name": "x", "resources": resources, "expires_at": None}, headers=as_temporary
    )
    assert forever.status_code == 422
    assert "cannot outlive" in forever.json()["error"]
    capped = live.client.post(
        base, json={"name": "y", "resources": resources}, headers=as_temporary
    ).json()
    assert capped["expires_at"] == temporary["expires_at"]
    # a reset token works out its grace period but manages no tokens: its successor does
    handed_over = live.client.post(f"{base}/{temporary['id']}/reset", headers=as_temporary)
    assert handed_over.status_code == 200
    for_good = live.client.delete(f"{base}/{handed_over.json()['id']}", headers=as_temporary)
    assert for_good.status_code == 403
    assert "has been reset" in for_good.json()["errors"]

    gone = live.client.delete(f"{base}/{successor['id']}", headers=bearer(admin))
    assert gone.status_code == 204
    assert auth.authenticate(successor["token"]) is None
    assert live.client.get(f"{base}/{successor['id']}", headers=bearer(admin)).status_code == 404
    assert live.client.get(base, headers=bearer(successor["token"])).status_code == 401
    assert successor["id"] not in [
        t["id"] for t in live.client.get(base, headers=bearer(admin)).json()
    ]


def test_a_domain_token_acts_for_its_domain_only(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    domains = f"/api/accounts/{owner}/sending_domains"
    tokens = f"/api/accounts/{owner}/api_tokens"
    ids = []
    for name in ("example.org", "example.com"):
        added = live.client.post(
            domains, json={"sending_domain": {"domain_name": name}}, headers=bearer(admin)
        )
        ids.append(added.json()["id"])
    own = [t for t in live.client.get(tokens, headers=bearer(admin)).json() if t["id"] != 1]
    assert [t["name"] for t in own] == [
        f"example.org token {own[0]['id']}",
        f"example.com token {own[1]['id']}",
    ]
    assert own[0]["resources"] == [
        {"resource_type": "domain", "resource_id": ids[0], "access_level": 100}
    ]
    assert own[0]["expires_at"] is None
    # the secret was never shown: a reset hands it out, named with the new id
    reset = live.client.post(f"{tokens}/{own[0]['id']}/reset", headers=bearer(admin)).json()
    assert reset["name"] == f"example.org token {reset['id']}"
    assert reset["expires_at"] is None  # a token that never expired is succeeded by one alike
    mine = bearer(reset["token"])

    assert [d["id"] for d in live.client.get(domains, headers=mine).json()["data"]] == [ids[0]]
    seen = live.client.get(f"{domains}/{ids[0]}", headers=mine).json()
    assert seen["permissions"] == {"can_read": True, "can_update": True, "can_destroy": False}
    assert live.client.get(f"{domains}/{ids[1] + 100}", headers=mine).status_code == 404
    patched = live.client.patch(
        f"{domains}/{ids[0]}", json={"domain": {"open_tracking_enabled": True}}, headers=mine
    )
    assert patched.status_code == 200
    assert live.client.get(f"{domains}/{ids[1]}", headers=mine).status_code == 403
    assert live.client.delete(f"{domains}/{ids[0]}", headers=mine).status_code == 403
    assert live.client.get(f"/api/accounts/{owner}/suppressions", headers=mine).status_code == 403
    logs = live.client.get(f"/api/email_logs/{uuid.uuid4()}", headers=mine)
    assert logs.status_code == 404  # its domain's logs only (tests/integration/test_email_log_list)
    assert live.client.post("/api/send", json=mail("me@example.org"), headers=mine).is_success
    other = live.client.post("/api/send", json=mail("me@example.com"), headers=mine)
    assert other.status_code == 401
    assert "may not send from it" in other.json()["errors"][1]

    # it may hand out what it holds, not more
    account_wide = [{"resource_type": "account", "resource_id": owner, "access_level": 10}]
    assert (
        live.client.post(
            tokens, json={"name": "x", "resources": account_wide}, headers=mine
        ).status_code
        == 403
    )
    # the last usable token of a domain stays (the reset one is on its way out)
    last = live.client.delete(f"{tokens}/{reset['id']}", headers=mine)
    assert last.status_code == 422
    assert "last API token" in last.json()["error"]
    second = live.client.post(
        tokens, json={"name": "ci", "resources": own[0]["resources"]}, headers=mine
    ).json()
    assert live.client.delete(f"{tokens}/{reset['id']}", headers=mine).status_code == 204

    # deleting the domain deletes the tokens that were for it alone
    assert live.client.delete(f"{domains}/{ids[0]}", headers=bearer(admin)).status_code == 204
    assert Authenticator(runtime.store, ttl=0).authenticate(second["token"]) is None
    left = [t["id"] for t in live.client.get(tokens, headers=bearer(admin)).json()]
    assert second["id"] not in left
    assert own[1]["id"] in left


def test_bad_requests_change_nothing(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    base = f"/api/accounts/{owner}/api_tokens"
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    cases = [
        ({"resources": viewer_of(owner)}, "name is required"),
        ({"name": "x"}, "resources must list"),
        (
            {
                "name": "x",
                "resources": [{"resource_type": "planet", "resource_id": 1, "access_level": 10}],
            },
            "resource_type must be",
        ),
        (
            {
                "name": "x",
                "resources": [
                    {"resource_type": "account", "resource_id": owner, "access_level": 50}
                ],
            },
            "access_level must be",
        ),
        (
            {
                "name": "x",
                "resources": [{"resource_type": "domain", "resource_id": 999, "access_level": 100}],
            },
            "sending domain 999 does not exist",
        ),
        (
            {
                "name": "x",
                "resources": [
                    {"resource_type": "account", "resource_id": owner + 1, "access_level": 10}
                ],
            },
            "is not this account",
        ),
        (
            {"name": "x", "resources": viewer_of(owner), "expires_at": "2001-01-01T00:00:00Z"},
            "in the future",
        ),
        (
            {"name": "x", "resources": viewer_of(owner), "expires_at": "2099-01-01T00:00:00Z"},
            "5 years",
        ),
        ({"name": "x", "resources": viewer_of(owner), "expires_at": "tomorrow"}, "ISO 8601"),
    ]
    for body, reason in cases:
        answer = live.client.post(base, json=body, headers=bearer(admin))
        assert answer.status_code == 422, body
        assert reason in answer.json()["error"], answer.text
    assert [t["id"] for t in live.client.get(base, headers=bearer(admin)).json()] == [1]
    never = live.client.post(
        base,
        json={"name": "n", "resources": viewer_of(owner), "expires_at": None},
        headers=bearer(admin),
    ).json()
    dated = live.client.post(
        base,
        json={"name": "d", "resources": viewer_of(owner), "expires_at": soon},
        headers=bearer(admin),
    ).json()
    assert never["expires_at"] is None
    shown = when(dated["expires_at"])  # to the millisecond
    assert abs(shown - datetime.fromisoformat(soon)) < timedelta(milliseconds=1)


def test_another_accounts_tokens_answer_404(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    other = open_account(runtime.store, "Other")
    theirs = bearer(issue_token(runtime.store, other, "theirs", created_by="t").token)
    mine = f"/api/accounts/{owner}/api_tokens"
    assert live.client.get(mine, headers=theirs).status_code == 404
    assert live.client.get(f"{mine}/1", headers=theirs).status_code == 404
    assert live.client.delete(f"{mine}/1", headers=theirs).status_code == 404
    assert live.client.post(f"{mine}/1/reset", headers=theirs).status_code == 404
    their_path = f"/api/accounts/{other}/api_tokens"
    assert live.client.get(f"{their_path}/1", headers=theirs).status_code == 404  # not theirs
    assert live.client.delete(f"{their_path}/1", headers=theirs).status_code == 404
    assert [t["name"] for t in live.client.get(their_path, headers=theirs).json()] == ["theirs"]
    assert Authenticator(runtime.store, ttl=0).authenticate(admin) is not None
    for nothing in (0, 2**64):  # ids no token or domain can have
        assert live.client.get(f"{mine}/{nothing}", headers=bearer(admin)).status_code == 404
        domain = f"/api/accounts/{owner}/sending_domains/{nothing}"
        assert live.client.get(domain, headers=bearer(admin)).status_code == 404


def test_an_expired_token_authenticates_nothing(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    caller = Authenticator(runtime.store).authenticate(admin)
    assert caller is not None
    yesterday = datetime.now(UTC) - timedelta(days=1)
    minted = create_token(
        runtime.store, caller, "old", viewer_of(owner), yesterday + timedelta(hours=1), yesterday
    )
    assert Authenticator(runtime.store).authenticate(minted.secret) is None
    listed = live.client.get(f"/api/accounts/{owner}/api_tokens", headers=bearer(admin)).json()
    assert minted.token.token_id not in [t["id"] for t in listed]
    answer = live.client.get(f"/api/accounts/{owner}/suppressions", headers=bearer(minted.secret))
    assert answer.status_code == 401


def test_racing_deletions_keep_a_domains_last_token(runtime: Runtime) -> None:
    owner = open_account(runtime.store, "acme")
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, owner, "example.org"
    )
    grant = [{"resource_type": "domain", "resource_id": domain_id, "access_level": 100}]
    admin = Principal.of(
        runtime.store.get(
            entity_id("api_token", issue_token(runtime.store, owner, "a", "t").token_id)
        )
    )
    extra = create_token(runtime.store, admin, "second", grant, DEFAULT, datetime.now(UTC))
    first = next(iter(runtime.store.get(entity_id("domain_tokens", domain_id)).tokens))
    stores = [runtime.store, EventStore(runtime.store.url)]
    outcomes: list[str] = []
    start = threading.Barrier(2)

    def remove(store: EventStore, token_id: int) -> None:
        start.wait()
        try:
            delete_token(store, admin, token_id, datetime.now(UTC))
            outcomes.append("deleted")
        except (Conflict, TokenRefused) as error:
            outcomes.append(type(error).__name__)

    threads = [
        threading.Thread(target=remove, args=(store, token_id))
        for store, token_id in zip(stores, [first, extra.token.token_id], strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stores[1].close()
    assert len(outcomes) == 2
    assert outcomes.count("deleted") == 1  # the other lost the race or found it the last
    kept = runtime.store.get(entity_id("domain_tokens", domain_id))
    assert isinstance(kept, DomainTokens)
    assert len(kept.tokens) == 1


def test_a_cached_token_stops_working_when_it_expires(
    runtime: Runtime, account: tuple[int, str]
) -> None:
    owner, admin = account
    caller = Authenticator(runtime.store).authenticate(admin)
    assert caller is not None
    now = datetime.now(UTC)
    minted = create_token(
        runtime.store, caller, "brief", viewer_of(owner), now + timedelta(seconds=1), now
    )
    auth = Authenticator(runtime.store, ttl=60)  # cached far longer than the token lives
    assert auth.authenticate(minted.secret) is not None
    assert auth.cached(minted.secret) is not None
    time.sleep(1.2)
    assert auth.cached(minted.secret) is None
    assert auth.authenticate(minted.secret) is None
