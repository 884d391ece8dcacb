"""`postline serve`'s SMTP relay, run as a user runs it, driven by swaks and smtplib."""

import json
import smtplib
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.process import Serve, postline
from tests.support.tools import swaks


def test_swaks_over_starttls_with_the_generated_certificate(
    database_url: str, tmp_path: Path
) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    server = Serve("--bootstrap", "--data-dir", str(tmp_path), env=env, log=tmp_path / "s.log")
    try:
        banner = "\n".join(server.banner)
        assert "STARTTLS; AUTH PLAIN/LOGIN also before TLS; username api" in banner
        key = tmp_path / "smtp-tls-key.pem"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert "generated a self-signed one" in (tmp_path / "s.log").read_text()
        token = json.loads((tmp_path / "credentials.json").read_text())["api_token"]
        result = subprocess.run(
            [
                swaks(),
                *("--server", f"127.0.0.1:{server.smtp_ports[0]}", "--tls"),
                *("--auth", "PLAIN", "--auth-user", "api", "--auth-password", token),
                *("--from", "shop@example.com", "--to", "ann@example.net"),
                *("--header", "X-MT-Category: e2e", "--header", "Subject: From swaks"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        queued = next(line for line in result.stdout.splitlines() if "queued as" in line)
        message_id = queued.rsplit(" ", 1)[1]
        log = httpx.get(
            f"{server.url}/api/email_logs/{message_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert log.status_code == 200
        body = log.json()
        assert (body["subject"], body["category"], body["to"]) == (
            "From swaks",
            "e2e",
            "ann@example.net",
        )
    finally:
        assert server.stop() == 0


def test_trusted_networks_and_shared_listeners_across_workers(
    database_url: str, tmp_path: Path
) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    boot = json.loads(postline("bootstrap", "--json", "--data-dir", str(tmp_path), env=env).stdout)
    server = Serve(
        *("--workers", "2", "--data-dir", str(tmp_path)),
        *("--smtp-trusted-networks", "127.0.0.0/8", "--smtp-trusted-token", str(boot["token_id"])),
        env=env,
        log=tmp_path / "s.log",
    )
    try:
        ids = []
        for number in range(6):  # new connections land on either worker
            with smtplib.SMTP("127.0.0.1", server.smtp_ports[0], timeout=30) as client:
                client.ehlo("legacy.example.com")
                client.mail("printer@example.com")
                client.rcpt("ann@example.net")
                code, reply = client.data(f"Subject: scan {number}\r\n\r\npage\r\n".encode())
            assert code == 250
            ids.append(reply.decode().rsplit(" ", 1)[1])
        headers = {"Authorization": f"Bearer {boot['api_token']}"}
        for message_id in ids:
            log = httpx.get(f"{server.url}/api/email_logs/{message_id}", headers=headers)
            assert log.status_code == 200
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--smtp-trusted-networks", "127.0.0.0/8"],
            "--smtp-trusted-networks needs --smtp-trusted-token",
        ),
        (
            ["--smtp-trusted-networks", "127.0.0.300/8", "--smtp-trusted-token", "1"],
            "--smtp-trusted-networks: ",
        ),
        (["--smtp", "localhost"], "--smtp/--smtps: 'localhost' is not HOST:PORT"),
        (["--smtp-tls-cert", "/nonexistent.pem"], "--smtp-tls-cert and --smtp-tls-key go together"),
        (["--smtp-timeout", "0"], "--smtp-timeout must be more than 0"),
    ],
)
def test_smtp_options_are_checked_before_anything_starts(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = postline("serve", "--data-dir", str(tmp_path), *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
