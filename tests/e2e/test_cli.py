"""The `postline` command line, run as a user runs it."""

import csv
import io
import json
import shlex
import subprocess
from pathlib import Path

import httpx

from engine.domains import add_domain, get_domain
from engine.runtime import Runtime
from tests.support.process import Serve, postline, postline_command, process_env


def test_bootstrap_is_idempotent_and_prints_json(database_url: str, tmp_path: Path) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    first = json.loads(postline("bootstrap", "--json", "--data-dir", str(tmp_path), env=env).stdout)
    second = json.loads(
        postline("bootstrap", "--json", "--data-dir", str(tmp_path), env=env).stdout
    )
    assert first == second
    assert first["account_id"] == 1
    assert len(first["api_token"]) == 32


def test_serve_prints_a_curl_that_works_and_tokens_can_be_issued(
    database_url: str, tmp_path: Path
) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    server = Serve("--bootstrap", "--data-dir", str(tmp_path), env=env, log=tmp_path / "s.log")
    try:
        banner = "\n".join(server.banner)
        assert f"API:    {server.url}" in banner
        curl = next(line.strip() for line in server.banner if line.strip().startswith("curl "))
        sent = subprocess.run(shlex.split(curl), capture_output=True, text=True, check=True)
        reply = json.loads(sent.stdout)
        assert reply["success"] is True
        assert len(reply["message_ids"]) == 1

        issued = json.loads(
            postline(
                "tokens",
                "create",
                "--account",
                "1",
                "--name",
                "ci",
                "--json",
                "--data-dir",
                str(tmp_path),
                env=env,
            ).stdout
        )
        assert (issued["account_id"], issued["name"]) == (1, "ci")
        log = httpx.get(
            f"{server.url}/api/email_logs/{reply['message_ids'][0]}",
            headers={"Api-Token": issued["token"]},
        )
        assert log.status_code == 200
        assert log.json()["to"] == "you@example.com"
    finally:
        assert server.stop() == 0

    replay = json.loads(postline("replay", "--json", "--data-dir", str(tmp_path), env=env).stdout)
    assert replay["projections"].keys() == {
        "email_logs",
        "delivery_queue",
        "sending_domains",
        "suppressions",
        "api_tokens",
        "stats",
        "audit_log",
    }
    assert 1 <= replay["projections"]["email_logs"] <= replay["log_position"]
    assert replay["projections"]["delivery_queue"] >= 2  # the message's Accepted and Queued


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    missing = postline(
        "tokens",
        "create",
        "--account",
        "42",
        "--name",
        "x",
        "--data-dir",
        str(tmp_path),
        check=False,
    )
    assert missing.returncode == 2
    assert "account 42 does not exist" in missing.stderr
    bad_url = postline("bootstrap", "--database-url", "mysql://x", check=False)
    assert bad_url.returncode == 2
    assert "unsupported scheme 'mysql'" in bad_url.stderr
    assert "Traceback" not in bad_url.stderr + missing.stderr


def test_serve_gives_up_clearly_when_the_database_is_unreachable(tmp_path: Path) -> None:
    down = postline(
        "serve",
        "--database-url",
        "postgresql://postgres@127.0.0.1:1/postgres",
        "--wait-for-database",
        "0",
        "--data-dir",
        str(tmp_path),
        check=False,
    )
    assert down.returncode == 3
    assert "the database is unavailable" in down.stderr
    assert "Traceback" not in down.stderr


def test_workers_share_the_listener_and_one_projector_serves_them_all(
    database_url: str, tmp_path: Path
) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    server = Serve(
        "--bootstrap",
        "--workers",
        "2",
        "--data-dir",
        str(tmp_path),
        env=env,
        log=tmp_path / "s.log",
    )
    try:
        assert "(2 workers)" in server.banner[0]
        token = json.loads((tmp_path / "credentials.json").read_text())["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        message = {
            "from": {"email": "a@example.com"},
            "to": [{"email": "b@example.com"}],
            "subject": "s",
            "text": "t",
        }
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            ids = [
                client.post("/api/send", json=message).json()["message_ids"][0] for _ in range(20)
            ]
            # every message is readable whichever worker answers the read
            for message_id in ids:
                assert client.get(f"/api/email_logs/{message_id}").status_code == 200
        worker_pids = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        assert len(worker_pids.read_text().split()) == 2
    finally:
        assert server.stop() == 0


def test_projector_role_runs_alone(database_url: str, tmp_path: Path) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    api = Serve(
        "--bootstrap",
        "--roles",
        "api",
        "--data-dir",
        str(tmp_path),
        env=env,
        log=tmp_path / "api.log",
    )
    projector = None
    try:
        token = json.loads((tmp_path / "credentials.json").read_text())["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        message = {
            "from": {"email": "a@example.com"},
            "to": [{"email": "b@example.com"}],
            "subject": "s",
            "text": "t",
        }
        sent = httpx.post(f"{api.url}/api/send", json=message, headers=headers).json()
        log_url = f"{api.url}/api/email_logs/{sent['message_ids'][0]}"
        assert httpx.get(log_url, headers=headers, timeout=30).status_code == 404  # no projector
        projector = subprocess.Popen(
            [*postline_command(), "serve", "--roles", "projector", "--data-dir", str(tmp_path)],
            env={**process_env(), **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert httpx.get(log_url, headers=headers, timeout=30).status_code == 200
    finally:
        if projector is not None:
            projector.terminate()
            assert projector.wait(timeout=30) == 0
        assert api.stop() == 0


def test_suppressions_import_and_export_csv(
    runtime: Runtime, account: tuple[int, str], database_url: str, tmp_path: Path
) -> None:
    account_id, _ = account
    add_domain(runtime.store, runtime.secrets, runtime.domain_config, account_id, "example.org")
    env = {"POSTLINE_DATABASE_URL": database_url}
    common = ["--data-dir", str(tmp_path), "--account", str(account_id)]
    listing = tmp_path / "list.csv"
    listing.write_text("name,email\nAnn,ann@example.net\nBob,not-an-address\nCy,cy@example.net\n")
    imported = postline(
        "suppressions",
        "import",
        str(listing),
        "--domain",
        "example.org",
        "--stream",
        "bulk",
        "--json",
        *common,
        env=env,
        check=False,
    )
    assert imported.returncode == 1  # one line was refused: said, and the rest imported
    assert json.loads(imported.stdout) == {
        "suppressed": 2,
        "invalid": [{"line": 3, "value": "not-an-address"}],
    }
    exported = postline("suppressions", "export", *common, env=env)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["email"], r["sending_stream"], r["domain_name"], r["type"]) for r in rows] == [
        ("ann@example.net", "bulk", "example.org", "manual import"),
        ("cy@example.net", "bulk", "example.org", "manual import"),
    ]
    unknown = postline(
        "suppressions",
        "import",
        str(listing),
        "--domain",
        "elsewhere.example",
        *common,
        env=env,
        check=False,
    )
    assert unknown.returncode == 2
    assert "has no sending domain elsewhere.example" in unknown.stderr


def test_dkim_rotate_prints_the_record_to_publish(
    runtime: Runtime, account: tuple[int, str], database_url: str, tmp_path: Path
) -> None:
    account_id, _ = account
    domain_id = add_domain(
        runtime.store, runtime.secrets, runtime.domain_config, account_id, "example.org"
    )
    before = get_domain(runtime.store, account_id, domain_id).dkim_keys
    env = {"POSTLINE_DATABASE_URL": database_url}
    common = ["--data-dir", str(tmp_path), "--account", str(account_id)]
    rotated = json.loads(
        postline("dkim", "rotate", "--domain", "example.org", "--json", *common, env=env).stdout
    )
    after = get_domain(runtime.store, account_id, domain_id).dkim_keys
    assert (rotated["selector"], rotated["record"]["name"]) == ("pl2", "pl2._domainkey.example.org")
    assert rotated["record"]["value"] == f"v=DKIM1; k=rsa; p={after[1]['public']}"
    assert after[1]["public"] != before[1]["public"]
    assert after[0]["public"] == before[0]["public"]  # pl1 goes on signing meanwhile
    unknown = postline("dkim", "rotate", "--domain", "nope.example", *common, env=env, check=False)
    assert unknown.returncode == 2
    assert "has no sending domain nope.example" in unknown.stderr


def test_status_lists_every_follower_and_the_queue(
    runtime: Runtime, database_url: str, tmp_path: Path
) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    shown = json.loads(postline("status", "--json", "--data-dir", str(tmp_path), env=env).stdout)
    assert shown["head"] == runtime.store.head()
    assert shown["queued"] == 0
    names = {f["name"]: f for f in shown["followers"]}
    assert {"email_logs", "delivery_queue", "sending_domains", "api_tokens", "dispatch"} <= set(
        names
    )
    assert all(f["behind"] == shown["head"] - f["position"] for f in names.values())
    text = postline("status", "--data-dir", str(tmp_path), env=env).stdout
    assert "log head" in text
    assert "email_logs" in text
