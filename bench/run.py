"""Benchmarks: each scenario runs beside its peer in the same run and reports the ratio.

    python bench/run.py [--scenarios api-send,api-batch] [--stores sqlite,postgres] [--duration 10]

Scenarios
  api-send   64 concurrent connections, POST /api/send, one recipient per message.
             Peer: the same server's no-op endpoint (/api/_noop): same body, decoded and
             validated by msgspec, nothing stored. The ratio says how much of the framework's
             ceiling the accept path keeps.
  api-batch  8 connections, POST /api/batch with 500 requests of one recipient each.
             Peer: /api/_noop/batch. Figures are recipients (messages) per second.

Load comes from wrk (Debian package `wrk`) in a separate process. Results are written as JSON to
bench/results/<UTC time>.json and bench/results/latest.json. Figures drift on shared machines:
compare the ratios, which are measured minutes apart on the same machine.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PG_URL = os.environ.get(
    "POSTLINE_BENCH_POSTGRES_URL",
    os.environ.get("POSTLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)

GOALS = {
    ("api-send", "postgres"): "≥ 1,500 msgs/s, ≥ 40% of no-op, p99 ≤ 50 ms",
    ("api-batch", "postgres"): "≥ 10,000 recipients/s",
    ("api-batch", "sqlite"): "≥ 10,000 recipients/s",
}


def send_body(n: int) -> dict:
    return {
        "from": {"email": "hello@example.com", "name": "Postline bench"},
        "to": [{"email": f"user{n}@example.com"}],
        "subject": "Your order has shipped",
        "text": "Hello! Your order #12345 is on its way.",
        "html": "<p>Hello! Your order <b>#12345</b> is on its way.</p>",
        "category": "shipping",
        "custom_variables": {"order_id": "12345"},
    }


def batch_body(requests: int) -> dict:
    base = send_body(0)
    base.pop("to")
    return {
        "base": base,
        "requests": [{"to": [{"email": f"user{i}@example.com"}]} for i in range(requests)],
    }


SCENARIOS = {
    "api-send": {
        "path": "/api/send",
        "noop": "/api/_noop",
        "body": send_body(1),
        "connections": 64,
        "threads": 2,
        "per_request": 1,
    },
    "api-batch": {
        "path": "/api/batch",
        "noop": "/api/_noop/batch",
        "body": batch_body(500),
        "connections": 8,
        "threads": 2,
        "per_request": 500,
    },
}


def wrk_script(token: str, body: dict, directory: Path) -> Path:
    script = directory / f"{uuid.uuid4().hex}.lua"
    payload = json.dumps(body).replace("\\", "\\\\").replace("'", "\\'")
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"wrk.body = '{payload}'\n"
    )
    return script


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict:
    def latency(percent: str) -> float | None:
        m = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        return round(float(m.group(1)) * _UNITS[m.group(2)], 2) if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_s": float(rps.group(1)) if rps else 0.0,
        "requests": int(total.group(1)) if total else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else None,
        "p50_ms": latency("50"),
        "p90_ms": latency("90"),
        "p99_ms": latency("99"),
    }


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    threads: int,
    seconds: float,
    server: "Server | None" = None,
    per_request: int = 1,
) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--latency", "--timeout", "10s", "-s", str(script), url]
    cpu = server.cpu_seconds() if server else 0.0
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result = parse_wrk(out)
    if server is not None and result["requests"]:
        # CPU the server spent per message: far steadier than throughput on a shared machine.
        used = server.cpu_seconds() - cpu
        result["server_cpu_us_per_message"] = round(
            used * 1e6 / (result["requests"] * per_request), 1
        )
    return result


class Server:
    """`postline serve` in its own process, on a free port."""

    def __init__(self, database_url: str, data_dir: Path, workers: int = 1) -> None:
        env = dict(os.environ, POSTLINE_DATABASE_URL=database_url)
        boot = subprocess.run(
            [sys.executable, "-m", "api.cli", "bootstrap", "--json", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        self.token = json.loads(boot.stdout)["api_token"]
        self.log = (data_dir / "serve.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "serve",
                "--http",
                "127.0.0.1:0",
                "--enable-noop-endpoint",
                "--workers",
                str(workers),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.base = ""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("Listening on "):
                self.base = line.split()[-1]
                break
        if not self.base:
            raise RuntimeError(f"postline serve did not start; see {data_dir / 'serve.log'}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far (Linux /proc)."""
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base + "/readyz", timeout=10) as r:
            return json.load(r)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def pg_schema(action: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        if action == "create":
            conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


ACCEPTED_TOPIC = "domain.message:Message.Accepted"


def count_accepted(store: str, target: str) -> int:
    """Messages recorded in the event store, counted in the database itself."""
    if store == "postgres":
        import psycopg

        with psycopg.connect(PG_URL) as conn:
            row = conn.execute(
                f'SELECT count(*) FROM "{target}".postline_events WHERE topic = %s',
                (ACCEPTED_TOPIC,),
            ).fetchone()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM stored_events WHERE topic = ?", (ACCEPTED_TOPIC,)
            ).fetchone()
    return int(row[0])


def run_scenario(
    name: str, store: str, seconds: float, warmup: float, work: Path, workers: int
) -> dict:
    spec = SCENARIOS[name]
    data_dir = work / f"{name}-{store}-{workers}"
    data_dir.mkdir()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    if store == "postgres":
        pg_schema("create", schema)
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}schema={schema}"
    else:
        url = f"sqlite:///{data_dir / 'postline.db'}"
    server = Server(url, data_dir, workers)
    try:
        script = wrk_script(server.token, spec["body"], work)
        c, t = spec["connections"], spec["threads"]
        per = spec["per_request"]
        run_wrk(server.base + spec["noop"], script, c, t, warmup)
        noop = run_wrk(server.base + spec["noop"], script, c, t, seconds, server, per)
        run_wrk(server.base + spec["path"], script, c, t, warmup)
        target = schema if store == "postgres" else str(data_dir / "postline.db")
        before = server.stats()["commits"]
        stored_before = count_accepted(store, target)
        real = run_wrk(server.base + spec["path"], script, c, t, seconds, server, per)
        time.sleep(1)  # let in-flight requests finish before counting
        committed = count_accepted(store, target) - stored_before
        after = server.stats()["commits"]
        # per process: with several workers this is the sample one worker saw
        transactions = after["transactions"] - before["transactions"]
        sampled = after["events"] - before["events"]
    finally:
        server.stop()
        if store == "postgres":
            pg_schema("drop", schema)
    accepted = (real["requests"] - real["non_2xx"]) * per
    result = {
        "scenario": name,
        "store": store,
        "workers": workers,
        "connections": spec["connections"],
        "messages_per_request": per,
        "postline": real,
        "noop": noop,
        "messages_per_s": round(real["requests_per_s"] * per, 1),
        "noop_messages_per_s": round(noop["requests_per_s"] * per, 1),
        "ratio_to_noop": round(real["requests_per_s"] / noop["requests_per_s"], 3)
        if noop["requests_per_s"]
        else None,
        # every 2xx must be backed by committed events (wrk may stop mid-flight requests,
        # so committed can exceed accepted, never the reverse)
        "messages_accepted": accepted,
        "messages_committed": committed,
        "durable": committed >= accepted,
        "commit_transactions": transactions,
        "events_per_transaction": round(sampled / transactions, 1) if transactions else None,
        "goal": GOALS.get((name, store)),
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="api-send,api-batch")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--workers", default="1,2", help="HTTP worker processes to try")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="postline-bench-") as tmp:
        for store in args.stores.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                for name in args.scenarios.split(","):
                    print(
                        f"== {name} on {store}, {workers} worker(s) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    result = run_scenario(
                        name, store, args.duration, args.warmup, Path(tmp), workers
                    )
                    results.append(result)
                    print(summary(result), flush=True)
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "duration_s": args.duration,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = report["when"].replace(":", "").replace("-", "")
    for path in (RESULTS / f"{stamp}.json", RESULTS / "latest.json"):
        path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {RESULTS / 'latest.json'}", file=sys.stderr)
    return 0 if all(r["durable"] and r["postline"]["non_2xx"] == 0 for r in results) else 1


def summary(r: dict) -> str:
    p = r["postline"]
    return (
        f"{r['scenario']:<10} {r['store']:<9} w{r['workers']} postline "
        f"{r['messages_per_s']:>9,.0f} msgs/s "
        f"(p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms) | no-op {r['noop_messages_per_s']:>9,.0f}"
        f" msgs/s | ratio {r['ratio_to_noop']:.2f} | non-2xx {p['non_2xx']} | "
        f"durable {r['durable']} | {r['events_per_transaction']} events/txn | server CPU/msg "
        f"{p.get('server_cpu_us_per_message')} us vs no-op "
        f"{r['noop'].get('server_cpu_us_per_message')} us"
    )


if __name__ == "__main__":
    sys.exit(main())
