"""`postline serve` delivering: HTTP in, local DNS, a local MX sink out."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.dns import LocalDns, Zone
from tests.support.mx_sink import MxSink
from tests.support.process import Serve, postline


@pytest.fixture
def destination() -> Iterator[tuple[LocalDns, MxSink]]:
    sink = MxSink()
    dns = LocalDns(
        Zone(mx={"sink.test": [(10, "mx.sink.test.")]}, a={"mx.sink.test": ["127.0.0.1"]})
    )
    try:
        yield dns, sink
    finally:
        dns.stop()
        sink.stop()


def test_a_message_sent_over_http_reaches_the_mx_and_the_log_says_so(
    database_url: str, tmp_path: Path, destination: tuple[LocalDns, MxSink]
) -> None:
    dns, sink = destination
    env = {
        "POSTLINE_DATABASE_URL": database_url,
        "POSTLINE_DNS_NAMESERVERS": f"127.0.0.1:{dns.port}",
        "POSTLINE_MX_PORT": str(sink.port),
    }
    server = Serve(
        "--bootstrap",
        "--data-dir",
        str(tmp_path),
        "--helo-name",
        "out.postline.test",
        env=env,
        log=tmp_path / "s.log",
    )
    try:
        assert "MTA:    delivers to the recipients' MX hosts, port" in "\n".join(server.banner)
        token = json.loads((tmp_path / "credentials.json").read_text())["api_token"]
        headers = {"Authorization": f"Bearer {token}"}
        sent = httpx.post(
            f"{server.url}/api/send",
            headers=headers,
            json={
                "from": {"email": "shop@example.com"},
                "to": [{"email": "ok@sink.test"}],
                "subject": "Delivered?",
                "text": "Yes.",
            },
        ).json()
        message_id = sent["message_ids"][0]
        deadline = time.monotonic() + 30
        while True:
            log = httpx.get(f"{server.url}/api/email_logs/{message_id}", headers=headers).json()
            if log["status"] == "delivered":
                break
            assert time.monotonic() < deadline, log
            time.sleep(0.2)
        assert [e["event_type"] for e in log["events"]] == ["sending", "delivery"]
        assert log["events"][1]["details"]["recipient_mx"] == "mx.sink.test"
        assert len(sink.received) == 1
        assert b"Subject: Delivered?" in sink.received[0].data
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--smarthost", "nowhere"], {}, "--mx-port/--smarthost: 'nowhere' is not HOST:PORT"),
        (["--mx-port", "70000"], {}, "--mx-port: 70000 is not a port"),
        ([], {"POSTLINE_SHAPING": "/nonexistent/shaping.toml"}, "delivery policy: "),
    ],
)
def test_delivery_options_are_checked_before_anything_starts(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = postline("serve", "--data-dir", str(tmp_path), *args, env=env, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_dkim_keygen_writes_a_private_key_and_prints_the_record(tmp_path: Path) -> None:
    made = json.loads(
        postline(
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "pl1",
            "--algorithm",
            "ed25519",
            "--data-dir",
            str(tmp_path),
            "--json",
        ).stdout
    )
    key = Path(made["private_key"])
    assert key.parent == (tmp_path / "dkim").resolve()
    assert key.stat().st_mode & 0o777 == 0o600
    assert made["dns_record"]["name"] == "pl1._domainkey.example.com"
    assert made["dns_record"]["value"].startswith("v=DKIM1; k=ed25519; p=")
    again = postline(
        "dkim",
        "keygen",
        "--domain",
        "example.com",
        "--selector",
        "pl1",
        "--data-dir",
        str(tmp_path),
        check=False,
    )
    assert again.returncode == 2
    assert "exists already" in again.stderr
