"""Several MTA processes on one PostgreSQL queue: no message twice, none lost to `kill -9`."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from email.parser import BytesHeaderParser
from pathlib import Path

import httpx
import pytest

from tests.support.dns import LocalDns, Zone
from tests.support.mx_sink import MxSink
from tests.support.postgres import fresh_schema, server_url
from tests.support.process import ROOT, Serve, process_env

pytestmark = pytest.mark.postgres

MESSAGES = 2000


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], MxSink]]:
    sink = MxSink()
    zone = Zone(mx={"sink.test": [(10, "mx.sink.test.")]}, a={"mx.sink.test": ["127.0.0.1"]})
    dns = LocalDns(zone)
    try:
        with fresh_schema(server_url()) as url:
            env = {
                "POSTLINE_DATABASE_URL": url,
                "POSTLINE_DNS_NAMESERVERS": f"127.0.0.1:{dns.port}",
                "POSTLINE_MX_PORT": str(sink.port),
            }
            yield url, env, sink
    finally:
        dns.stop()
        sink.stop()


def start_api(env: dict[str, str], data_dir: Path) -> Serve:
    """The front end alone: HTTP, the dispatcher and the read models; no delivery."""
    return Serve(
        *("--bootstrap", "--roles", "api,projector", "--data-dir", str(data_dir)),
        env=env,
        log=data_dir / "api.log",
    )


def token(data_dir: Path) -> str:
    return str(json.loads((data_dir / "credentials.json").read_text())["api_token"])


def start_mta(env: dict[str, str], data_dir: Path, log: Path, lease: float) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "api.cli",
            "serve",
            "--roles",
            "mta",
            "--data-dir",
            str(data_dir),
            "--delivery-lease",
            str(lease),
            *("--sender-policy", "any"),  # as the front end: the senders are not verified here
        ],
        env={**process_env(), **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )


def send_all(api: Serve, secret: str) -> list[str]:
    ids: list[str] = []
    with httpx.Client(base_url=api.url, headers={"Api-Token": secret}, timeout=60) as client:
        for start in range(0, MESSAGES, 500):
            body = {
                "base": {"from": {"email": "shop@example.com"}, "subject": "s", "text": "t"},
                "requests": [
                    {"to": [{"email": f"ok{n}@sink.test"}]} for n in range(start, start + 500)
                ],
            }
            reply = client.post("/api/batch", json=body).json()
            ids += [m for r in reply["responses"] for m in r["message_ids"]]
    return ids


def delivered_ids(sink: MxSink) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(
        parser.parsebytes(r.data)["Message-ID"].strip("<>").split("@")[0]
        for r in list(sink.received)
    )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_two_workers_never_deliver_a_message_twice(
    setup: tuple[str, dict[str, str], MxSink], tmp_path: Path
) -> None:
    _, env, sink = setup
    api = start_api(env, tmp_path)
    workers = [start_mta(env, tmp_path, tmp_path / f"mta{n}.log", 600) for n in range(2)]
    try:
        ids = send_all(api, token(tmp_path))
        wait_for(lambda: sum(delivered_ids(sink).values()) >= MESSAGES, 120, "not all delivered")
        time.sleep(1)  # anything delivered twice would arrive now
        counts = delivered_ids(sink)
        assert set(counts) == {i.replace("-", "") for i in ids}
        assert max(counts.values()) == 1
    finally:
        for worker in workers:
            worker.terminate()
            assert worker.wait(30) == 0
        assert api.stop() == 0


def test_a_worker_killed_mid_run_loses_nothing(
    setup: tuple[str, dict[str, str], MxSink], tmp_path: Path
) -> None:
    _, env, sink = setup
    api = start_api(env, tmp_path)
    doomed = start_mta(env, tmp_path, tmp_path / "doomed.log", lease=3)
    survivor = None
    try:
        ids = send_all(api, token(tmp_path))
        wait_for(lambda: sum(delivered_ids(sink).values()) >= MESSAGES // 4, 60, "no progress")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
        survivor = start_mta(env, tmp_path, tmp_path / "survivor.log", lease=3)
        expected = {i.replace("-", "") for i in ids}
        wait_for(lambda: set(delivered_ids(sink)) >= expected, 120, "messages were lost")
        headers = {"Api-Token": token(tmp_path)}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            for message_id in ids[:: MESSAGES // 20]:
                wait_for(
                    lambda m=message_id: (
                        client.get(f"/api/email_logs/{m}").json()["status"] == "delivered"
                    ),
                    30,
                    f"{message_id} is not logged as delivered",
                )
    finally:
        if survivor is not None:
            survivor.terminate()
            assert survivor.wait(30) == 0
        assert api.stop() == 0
