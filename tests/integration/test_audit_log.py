"""The audit log: control-plane changes through the API, each with its actor and changes."""

from typing import Any

from engine.runtime import Runtime
from engine.suppressions import suppress
from projections.audit_log import list_entries
from tests.support.live import LiveServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_changes_are_entries_with_actor_resource_and_changes(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    base = f"/api/accounts/{owner}"
    me = live.client.get(f"{base}/api_tokens", headers=bearer(admin)).json()[0]
    ci = live.client.post(
        f"{base}/api_tokens",
        json={
            "name": "ci",
            "resources": [{"resource_type": "account", "resource_id": owner, "access_level": 10}],
        },
        headers=bearer(admin),
    ).json()
    live.client.post(f"{base}/api_tokens/{ci['id']}/reset", headers=bearer(admin))
    live.client.delete(f"{base}/api_tokens/{ci['id']}", headers=bearer(admin))
    domain = live.client.post(
        f"{base}/sending_domains",
        json={"sending_domain": {"domain_name": "example.org"}},
        headers=bearer(admin),
    ).json()
    settings = {"domain": {"open_tracking_enabled": False, "click_tracking_enabled": True}}
    live.client.patch(
        f"{base}/sending_domains/{domain['id']}", json=settings, headers=bearer(admin)
    )
    live.client.post(f"{base}/sending_domains/{domain['id']}/rotate_dkim", headers=bearer(admin))
    added = live.client.post(
        f"{base}/suppressions",
        json={"email": "x@example.net", "domain_id": domain["id"], "sending_stream": "bulk"},
        headers=bearer(admin),
    ).json()["data"]
    live.client.delete(f"{base}/suppressions/{added['id']}", headers=bearer(admin))
    suppress(
        runtime.store, owner, "bounced@example.net", "example.org", "transactional", "hard bounce"
    )
    live.client.delete(f"{base}/sending_domains/{domain['id']}", headers=bearer(admin))

    answer = live.client.get(f"{base}/audit_log", headers=bearer(admin))
    assert answer.status_code == 200
    entries = list(reversed(answer.json()["data"]))
    assert [e["event"] for e in entries] == [
        "activity_log.account.created",
        "activity_log.api_token.created",  # the fixture's token
        "activity_log.api_token.created",  # ci
        "activity_log.api_token.created",  # its successor
        "activity_log.api_token.reset",
        "activity_log.api_token.deleted",
        "activity_log.sending_domain.created",
        "activity_log.api_token.created",  # the domain's own token
        "activity_log.sending_domain.updated",
        "activity_log.sending_domain.dkim_rotation_started",
        "activity_log.suppression.created",
        "activity_log.suppression.deleted",
        "activity_log.suppression.created",
        "activity_log.sending_domain.deleted",
        "activity_log.api_token.deleted",  # the domain's token goes with it
    ]
    by_admin = {"id": me["id"], "type": "api_token", "name": me["name"]}
    created = entries[2]
    assert created["actor"] == by_admin
    assert created["resource"] == {"id": str(ci["id"]), "type": "api_token", "name": "ci"}
    assert created["description"] == "created the API token ci"
    assert created["changes"]["resources"]["to"][0]["access_level"] == 10
    assert entries[5]["resource"]["name"] == "ci"  # named though the event does not say it
    updated = entries[8]
    assert updated["actor"] == by_admin
    assert updated["changes"] == {
        "click_tracking_enabled": {"from": False, "to": True},
        "open_tracking_enabled": {"from": True, "to": False},
    }
    assert entries[11]["description"] == "removed x@example.net from the suppression list"
    assert entries[12]["actor"] == {"name": "Postline"}  # an automatic suppression
    assert entries[12]["description"] == "suppressed bounced@example.net (hard bounce)"
    assert all(isinstance(e["timestamp"], int) and e["created_at"].endswith("Z") for e in entries)

    page, cursor = list_entries(runtime.store.db, owner, limit=10)
    rest, end = list_entries(runtime.store.db, owner, before=cursor, limit=10)
    assert [e["id"] for e in page + rest] == [e["id"] for e in reversed(entries)]
    assert end is None
    paged = live.client.get(f"{base}/audit_log", params={"before": cursor}, headers=bearer(admin))
    assert [e["id"] for e in paged.json()["data"]] == [e["id"] for e in rest]


def test_only_the_accounts_admins_read_it(
    runtime: Runtime, account: tuple[int, str], live: LiveServer
) -> None:
    owner, admin = account
    viewer: dict[str, Any] = live.client.post(
        f"/api/accounts/{owner}/api_tokens",
        json={
            "name": "v",
            "resources": [{"resource_type": "account", "resource_id": owner, "access_level": 10}],
        },
        headers=bearer(admin),
    ).json()
    path = f"/api/accounts/{owner}/audit_log"
    assert live.client.get(path, headers=bearer(viewer["token"])).status_code == 403
    assert (
        live.client.get(f"/api/accounts/{owner + 1}/audit_log", headers=bearer(admin)).status_code
        == 404
    )
    bad = live.client.get(path, params={"since": "last week"}, headers=bearer(admin))
    assert bad.status_code == 422
    assert "since must be an ISO 8601 time" in bad.json()["error"]
