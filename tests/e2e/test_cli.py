"""The `postline` command line, run as a user runs it."""

import json
import shlex
import subprocess
from pathlib import Path

import httpx

from tests.support.process import Serve, postline


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
    assert replay["projections"].keys() == {"email_logs"}
    assert 1 <= replay["projections"]["email_logs"] <= replay["log_position"]


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
