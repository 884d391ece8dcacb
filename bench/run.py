"""Benchmarks: each scenario runs beside its peer in the same run and reports the ratio.

    python bench/run.py [--scenarios api-send,api-batch,smtp-ingest,relay-e2e,replay]
                        [--setups postgres/1+projector,...] [--duration 10] [--smtp-messages N]
                        [--replay-events N] [--relay-rounds N]

Scenarios
  api-send   64 concurrent connections, POST /api/send, one recipient per message.
             Peer: the same server's no-op endpoint (/api/_noop): same body, decoded and
             validated by msgspec, nothing stored. The ratio says how much of the framework's
             ceiling the accept path keeps.
  api-batch  8 connections, POST /api/batch with 500 requests of one recipient each.
             Peer: /api/_noop/batch. Figures are recipients (messages) per second.

  smtp-ingest
             Postfix's smtp-source, 16 sessions, 10,000 messages of 5 KB, once with a new
             connection per message and once reusing connections (-d), against Postline's
             trusted-network port, a throwaway Postfix relaying to its discard transport, and
             a no-op aiosmtpd server (bench/smtp.py). Figures are messages per second.

  relay-e2e  smtp-source -d (16 sessions, 10,000 messages of 5 KB) -> Postline's trusted port
             -> MX resolved through a local DNS server -> Postfix's smtp-sink; the time until
             the sink has every message. Peer: a throwaway Postfix relaying the same load to
             the same sink. Postline (DKIM off) and Postfix take turns, `--relay-rounds` runs
             each (default 3), each starting when the other side is idle; the medians are
             compared. Then one run with DKIM on.

  replay     `postline replay`'s rebuild of every read model (projections.replay) over a
             history of 1,000,000 events (`--replay-events`) in a PostgreSQL schema: messages
             accepted, queued, delivered (some after a soft bounce) or bounced, written in
             bulk through the application's recorder (not timed; bench/replay.py). Peer: the
             raw read rate of the same log in the same run, every notification read through
             `recorder.select_notifications` in batches of 5,000 and nothing done with it
             (measured before and after the rebuild; the faster counts). Figures are log
             events per second; the run checks the rebuilt read models against the history.
             Runs once, whatever `--setups` says.

Setups (`--setups`)
  STORE/WORKERS[+projector][+mta]: sqlite or postgres; how many HTTP worker processes;
  `+projector` and `+mta` run the read models and the delivery worker in `postline serve
  --roles ROLE` processes of their own (the scale-out topology) instead of inside the HTTP
  process. `+mta` setups only apply to relay-e2e. `read_model_lag_s` says how long after the
  load the email logs showed every stored message.

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
from collections.abc import Callable, Iterator
from pathlib import Path

import smtp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import replay  # (after the path: it imports the application)

from tests.support.dns import LocalDns, Zone

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
    ("replay", "postgres"): replay.GOAL,
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
    """`postline serve` in its own process, on a free port.

    Each role in `split` runs in a `postline serve --roles ROLE` process of its own instead of
    inside the HTTP process: the scale-out topology of the README. All processes count towards
    the server's CPU.
    """

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        workers: int = 1,
        split: tuple[str, ...] = (),
        smtp: bool = False,
        mta_env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, POSTLINE_DATABASE_URL=database_url, **(mta_env or {}))
        boot = subprocess.run(
            [sys.executable, "-m", "api.cli", "bootstrap", "--json", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        )
        credentials = json.loads(boot.stdout)
        self.token = credentials["api_token"]
        # The SMTP load tool cannot AUTH: the relay trusts loopback as the bootstrap token, with
        # the per-connection and per-account limits lifted (smtp-source -d sends ~600 messages
        # over each connection).
        smtp_options = [
            *("--smtp", "127.0.0.1:0", "--smtp-trusted-networks", "127.0.0.0/8"),
            *("--smtp-trusted-token", str(credentials["token_id"])),
            *("--smtp-max-messages-per-connection", "0"),
            *("--smtp-max-connections-per-account", "0"),
        ]
        wanted = ["api", *(["smtp"] if smtp else []), *(["mta"] if mta_env is not None else [])]
        wanted.append("projector")
        roles = [r for r in wanted if r not in split]
        own = [r for r in wanted if r in split]
        self.log = (data_dir / "serve.log").open("w")
        # Any sender domain: the load tools send from example.com, which no DNS here verifies.
        common = ["--data-dir", str(data_dir), "--log-level", "warning", "--sender-policy", "any"]
        self.others = [
            subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--roles", role, *common],
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                env=env,
                cwd=ROOT,
            )
            for role in own
        ]
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
                "--roles",
                ",".join(roles),
                *(smtp_options if smtp else []),
                *common,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.base = ""
        self.smtp_port = 0
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.strip().startswith("SMTP:"):
                self.smtp_port = int(line.split()[1].rpartition(":")[2])
            if line.startswith("Listening on "):
                self.base = line.split()[-1]
                break
        if not self.base:
            self.stop()
            raise RuntimeError(f"postline serve did not start; see {data_dir / 'serve.log'}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its worker processes so far (Linux /proc)."""
        pids = [self.process.pid, *(other.pid for other in self.others)]
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
        for process in (self.process, *self.others):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def pg_schema(action: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        if action == "create":
            conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


ACCEPTED_TOPIC = "domain.message:Message.Accepted"


def _count(store: str, target: str, sqlite_file: str, sql: str, *args: str) -> int:
    if store == "postgres":
        import psycopg

        with psycopg.connect(PG_URL) as conn:
            conn.execute(f'SET search_path TO "{target}"')
            row = conn.execute(sql.replace("?", "%s"), args).fetchone()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(sqlite_file)) as conn:
            row = conn.execute(sql, args).fetchone()
    return int(row[0])


def count_accepted(store: str, target: str, data_dir: Path) -> int:
    """Messages recorded in the event store, counted in the database itself."""
    table = "postline_events" if store == "postgres" else "stored_events"
    return _count(
        store,
        target,
        str(data_dir / "postline.db"),
        f"SELECT count(*) FROM {table} WHERE topic = ?",
        ACCEPTED_TOPIC,
    )


def count_logged(store: str, target: str, data_dir: Path) -> int:
    """Messages the email-log read model shows."""
    return _count(
        store, target, str(data_dir / "postline-views.db"), "SELECT count(*) FROM email_logs"
    )


def read_model_lag(store: str, target: str, data_dir: Path, timeout: float = 120.0) -> float:
    """Seconds, after the load stops, until the email logs show every stored message."""
    start = time.monotonic()
    stored = count_accepted(store, target, data_dir)
    while count_logged(store, target, data_dir) < stored:
        if time.monotonic() - start > timeout:
            return float("inf")
        time.sleep(0.1)
    return round(time.monotonic() - start, 1)


SPLIT_ROLES = ("projector", "mta")


def parse_setup(value: str) -> tuple[str, int, tuple[str, ...]]:
    """`postgres/2+projector+mta` -> ("postgres", 2, ("projector", "mta")): store, HTTP
    workers, and the roles that run in processes of their own."""
    store, _, rest = value.partition("/")
    workers, *split = (rest or "1").split("+")
    if (
        store not in ("sqlite", "postgres")
        or not workers.isdigit()
        or not set(split) <= set(SPLIT_ROLES)
        or len(set(split)) != len(split)
    ):
        raise ValueError(
            f"setup {value!r}: use STORE/WORKERS[+projector][+mta], e.g. postgres/1+projector"
        )
    return store, int(workers), tuple(split)


def goal_met(result: dict) -> bool | None:
    """Whether a scenario with a goal reached it (None where there is no goal)."""
    name, store = result["scenario"], result["store"]
    if (name, store) not in GOALS:
        return None
    if name == "api-batch":
        return result["messages_per_s"] >= 10_000
    if name == "replay":
        return result["events_per_s"] >= 20_000 and result["ratio_to_raw_read"] >= 0.25
    p99 = result["postline"]["p99_ms"]
    return (
        result["messages_per_s"] >= 1_500
        and (result["ratio_to_noop"] or 0) >= 0.40
        and p99 is not None
        and p99 <= 50
    )


def fresh_store(name: str, setup: str, store: str, work: Path) -> tuple[Path, str, str]:
    """A new data folder and an empty store for one scenario: (folder, PG schema, store URL)."""
    data_dir = work / f"{name}-{setup.replace('/', '-')}"
    data_dir.mkdir()
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    if store == "postgres":
        pg_schema("create", schema)
        sep = "&" if "?" in PG_URL else "?"
        return data_dir, schema, f"{PG_URL}{sep}schema={schema}"
    return data_dir, schema, f"sqlite:///{data_dir / 'postline.db'}"


def run_scenario(name: str, setup: str, seconds: float, warmup: float, work: Path) -> dict:
    spec = SCENARIOS[name]
    store, workers, split = parse_setup(setup)
    data_dir, schema, url = fresh_store(name, setup, store, work)
    server = Server(url, data_dir, workers, split)
    try:
        script = wrk_script(server.token, spec["body"], work)
        c, t = spec["connections"], spec["threads"]
        per = spec["per_request"]
        run_wrk(server.base + spec["noop"], script, c, t, warmup)
        noop = run_wrk(server.base + spec["noop"], script, c, t, seconds, server, per)
        run_wrk(server.base + spec["path"], script, c, t, warmup)
        before = server.stats()["commits"]
        stored_before = count_accepted(store, schema, data_dir)
        real = run_wrk(server.base + spec["path"], script, c, t, seconds, server, per)
        time.sleep(1)  # let in-flight requests finish before counting
        committed = count_accepted(store, schema, data_dir) - stored_before
        after = server.stats()["commits"]
        lag = read_model_lag(store, schema, data_dir)
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
        "setup": setup,
        "workers": workers,
        "own_processes": list(split),
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
        "read_model_lag_s": lag,
        "commit_transactions": transactions,
        "events_per_transaction": round(sampled / transactions, 1) if transactions else None,
        "goal": GOALS.get((name, store)),
    }
    result["goal_met"] = goal_met(result)
    return result


SMTP_GOAL = "≥ 1.5 times Postfix in both modes, ≥ 75% of the no-op server, every 250 durable"


def run_smtp_scenario(setup: str, work: Path, messages: int) -> dict:
    """smtp-ingest: smtp-source against Postline, Postfix and a no-op aiosmtpd, in turn."""
    store, workers, split = parse_setup(setup)
    data_dir, schema, url = fresh_store("smtp-ingest", setup, store, work)
    server = Server(url, data_dir, workers, split, smtp=True)
    noop = smtp.NoopSmtp()
    try:
        postfix: smtp.Postfix | None = smtp.Postfix()
        postfix_problem = None
    except RuntimeError as error:
        postfix, postfix_problem = None, str(error)
    modes: dict[str, dict] = {}
    durable = True
    try:
        for mode in ("new", "reuse"):
            reuse = mode == "reuse"
            targets = [("postline", server.smtp_port), ("noop", noop.port)]
            if postfix is not None:
                targets.append(("postfix", postfix.port))
            for _, port in targets:  # warm up every server the same way
                smtp.smtp_source(port, min(1000, messages), reuse=reuse)
            figures: dict[str, dict | None] = {"postfix": None}
            for name, port in targets:
                before = count_accepted(store, schema, data_dir) if name == "postline" else 0
                cpu = server.cpu_seconds() if name == "postline" else noop.cpu_seconds()
                figures[name] = smtp.smtp_source(port, messages, reuse=reuse)
                if name == "postline":
                    time.sleep(0.5)
                    stored = count_accepted(store, schema, data_dir) - before
                    figures[name]["messages_committed"] = stored  # type: ignore[index]
                    durable = durable and stored >= messages
                if name != "postfix":
                    used = (
                        server.cpu_seconds() if name == "postline" else noop.cpu_seconds()
                    ) - cpu
                    figures[name]["server_cpu_us_per_message"] = round(  # type: ignore[index]
                        used * 1e6 / messages, 1
                    )
            ours = figures["postline"]["messages_per_s"]  # type: ignore[index]
            peer = figures["postfix"]
            modes[mode] = {
                **figures,
                "ratio_to_postfix": round(ours / peer["messages_per_s"], 2) if peer else None,
                "ratio_to_noop": round(ours / figures["noop"]["messages_per_s"], 2),  # type: ignore[index]
            }
    finally:
        server.stop()
        noop.stop()
        if postfix is not None:
            postfix.stop()
        if store == "postgres":
            pg_schema("drop", schema)
    ok = all(modes[m][n]["ok"] for m in modes for n in ("postline", "noop"))  # type: ignore[index]
    met = all(
        modes[m]["ratio_to_postfix"] is not None
        and modes[m]["ratio_to_postfix"] >= 1.5
        and modes[m]["ratio_to_noop"] >= 0.75
        for m in modes
    )
    return {
        "scenario": "smtp-ingest",
        "store": store,
        "setup": setup,
        "workers": workers,
        "own_processes": list(split),
        "sessions": smtp.SESSIONS,
        "message_bytes": smtp.MESSAGE_BYTES,
        "modes": modes,
        "postfix_problem": postfix_problem,
        "durable": durable and ok,
        "goal": SMTP_GOAL,
        "goal_met": met and durable and ok,
    }


def smtp_summary(r: dict) -> str:
    lines = []
    for mode, m in r["modes"].items():
        p = m["postfix"]
        postfix = f"{p['messages_per_s']:>7,.0f}" if p else "    n/a"
        ours = m["postline"]["messages_per_s"]
        lines.append(
            f"smtp-ingest {r['setup']:<20} {mode:<5} postline {ours:>7,.0f}"
            f" msgs/s | postfix {postfix} | no-op {m['noop']['messages_per_s']:>7,.0f} | "
            f"x postfix {m['ratio_to_postfix']} | x no-op {m['ratio_to_noop']} | "
            f"CPU/msg {m['postline']['server_cpu_us_per_message']} us vs no-op "
            f"{m['noop']['server_cpu_us_per_message']} us"
        )
    lines.append(f"smtp-ingest {r['setup']}: durable {r['durable']} | goal met: {r['goal_met']}")
    if r["postfix_problem"]:
        lines.append(f"  (no Postfix peer: {r['postfix_problem']})")
    return "\n".join(lines)


RELAY_GOAL = "≥ 2 times Postfix end to end (DKIM off), every message at the sink"
RELAY_DOMAIN = "sink.test"


def run_relay_scenario(setup: str, work: Path, messages: int, rounds: int = 3) -> dict:
    """relay-e2e: smtp-source -> Postline -> MX via local DNS -> smtp-sink, and via Postfix.

    Postline (DKIM off) and Postfix take turns, `rounds` times each (each going first every
    other round), each run starting once the other side is idle (Postline's read models caught
    up): a machine that slows down or speeds up meanwhile weighs on both. The figures are the
    medians (of an even number, the upper one); then one run with DKIM on.
    """
    store, workers, _ = parse_setup(setup)
    sink = smtp.SmtpSink()
    mx_host = f"mx.{RELAY_DOMAIN}"
    dns = LocalDns(Zone(mx={RELAY_DOMAIN: [(10, mx_host + ".")]}, a={mx_host: ["127.0.0.1"]}))
    figures: dict[str, dict | None] = {}
    try:
        try:
            postfix: smtp.Postfix | None = smtp.Postfix(relay_to=sink.port)
        except RuntimeError as error:
            postfix, figures["postfix_problem"] = None, str(error)  # type: ignore[assignment]
        try:
            with relay_server(setup, work, dns, sink, dkim=False) as (server, settle):
                relay_warm(sink, server.smtp_port)
                if postfix is not None:
                    relay_warm(sink, postfix.port)
                ours, theirs, settled = [], [], []
                for turn in range(rounds):  # (each side goes first every other round)
                    for side in ("postline", "postfix")[:: 1 if turn % 2 == 0 else -1]:
                        if side == "postline":
                            ours.append(relay_run(sink, server.smtp_port, messages))
                            settled.append(settle())
                        elif postfix is not None:
                            theirs.append(relay_run(sink, postfix.port, messages))
                figures["postline"] = {**median_run(ours), "read_models_settled_s": settled}
                figures["postfix"] = median_run(theirs) if theirs else None
        finally:
            if postfix is not None:
                postfix.stop()
        with relay_server(setup, work, dns, sink, dkim=True) as (server, _):
            relay_warm(sink, server.smtp_port)
            figures["postline_dkim"] = relay_run(sink, server.smtp_port, messages)
    finally:
        dns.stop()
        sink.stop()
    ours_figure = figures["postline"]
    peer = figures.get("postfix")
    ratio = round(ours_figure["messages_per_s"] / peer["messages_per_s"], 2) if peer else None  # type: ignore[index]
    complete = all(f["complete"] for k, f in figures.items() if isinstance(f, dict))
    return {
        "scenario": "relay-e2e",
        "store": store,
        "setup": setup,
        "workers": workers,
        "messages": messages,
        "rounds": rounds,
        "figures": figures,
        "ratio_to_postfix": ratio,
        "durable": complete,
        "goal": RELAY_GOAL,
        "goal_met": bool(ratio is not None and ratio >= 2 and complete),
    }


@contextlib.contextmanager
def relay_server(
    setup: str, work: Path, dns: LocalDns, sink: "smtp.SmtpSink", *, dkim: bool
) -> Iterator[tuple[Server, Callable[[], float]]]:
    """Postline delivering to `sink` through `dns`, and a function that waits until its read
    models have caught up with what it took."""
    store, workers, split = parse_setup(setup)
    label = "postline_dkim" if dkim else "postline"
    data_dir, schema, url = fresh_store(f"relay-{label}", setup, store, work)
    mta_env = {
        "POSTLINE_DNS_NAMESERVERS": f"127.0.0.1:{dns.port}",
        "POSTLINE_MX_PORT": str(sink.port),
    }
    if dkim:
        mta_env["POSTLINE_DKIM_KEYS"] = str(dkim_keys(data_dir))
    # The sink is one site: shape it as Postfix treats a destination by default (20
    # connections, no message rate), not as a mailbox provider.
    shaping = data_dir / "shaping.toml"
    shaping.write_text(
        '[default]\nconnection_limit = 20\nmax_message_rate = ""\n'
        "max_deliveries_per_connection = 1000\n"
    )
    mta_env["POSTLINE_SHAPING"] = str(shaping)
    server = Server(url, data_dir, workers, split, smtp=True, mta_env=mta_env)
    try:
        yield server, lambda: read_model_lag(store, schema, data_dir)
    finally:
        server.stop()
        if store == "postgres":
            pg_schema("drop", schema)


def relay_warm(sink: "smtp.SmtpSink", port: int, messages: int = 1000) -> None:
    """A first load through a fresh server (connections, caches, the first batches)."""
    base = sink.messages
    smtp.smtp_source(port, messages, reuse=True, recipient=f"rcpt@{RELAY_DOMAIN}")
    sink.wait_for(base + messages, 120)


def relay_run(sink: "smtp.SmtpSink", port: int, messages: int) -> dict:
    """Time `messages` from the first SMTP command until the sink has them all."""
    base = sink.messages
    start = time.perf_counter()
    ingest = smtp.smtp_source(port, messages, reuse=True, recipient=f"rcpt@{RELAY_DOMAIN}")
    waited = sink.wait_for(base + messages, 600)
    seconds = time.perf_counter() - start if waited != float("inf") else float("inf")
    return {
        "ingest_messages_per_s": ingest["messages_per_s"],
        "seconds": round(seconds, 2),
        "messages_per_s": round(messages / seconds, 1) if seconds != float("inf") else 0.0,
        "complete": ingest["ok"] and seconds != float("inf"),
        "errors": ingest["errors"],
    }


def median_run(runs: list[dict]) -> dict:
    """The run of median throughput, with every run's figure beside it."""
    middle = sorted(runs, key=lambda r: r["messages_per_s"])[len(runs) // 2]
    return {
        **middle,
        "complete": all(r["complete"] for r in runs),
        "runs_messages_per_s": [r["messages_per_s"] for r in runs],
    }


def run_replay_scenario(events: int) -> dict:
    """replay: the rebuild of every read model over `events` events, in a schema of its own."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    pg_schema("create", schema)
    sep = "&" if "?" in PG_URL else "?"
    try:
        result = replay.run(f"{PG_URL}{sep}schema={schema}", events)
    finally:
        pg_schema("drop", schema)
    result["goal_met"] = goal_met(result)
    return result


def dkim_keys(data_dir: Path) -> Path:
    """A DKIM key for the benchmark's sender domain, and the keys file that lists it."""
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "dkim",
            "keygen",
            "--domain",
            "example.com",
            "--selector",
            "bench",
            "--out",
            str(data_dir / "dkim"),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    listing = data_dir / "dkim-keys.toml"
    listing.write_text(json.loads(made.stdout)["keys_file_entry"] + "\n")
    return listing


def relay_summary(r: dict) -> str:
    f = r["figures"]
    postfix = f.get("postfix")
    runs = ", ".join(f"{x:,.0f}" for x in f["postline"].get("runs_messages_per_s", []))
    peer = "n/a"
    if postfix:
        peer_runs = ", ".join(f"{x:,.0f}" for x in postfix.get("runs_messages_per_s", []))
        peer = f"{postfix['messages_per_s']:,.0f} ({peer_runs})"
    return (
        f"relay-e2e  {r['setup']:<20} postline {f['postline']['messages_per_s']:>7,.0f} msgs/s "
        f"({runs}; with DKIM {f['postline_dkim']['messages_per_s']:,.0f}) | postfix {peer} | "
        f"x postfix {r['ratio_to_postfix']} | complete {r['durable']} | goal met: {r['goal_met']}"
    )


DEFAULT_SETUPS = (
    "sqlite/1,sqlite/2,postgres/1,postgres/1+projector,postgres/2+projector,"
    "sqlite/1+projector+mta,postgres/1+projector+mta"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="api-send,api-batch,smtp-ingest,relay-e2e,replay")
    parser.add_argument(
        "--replay-events", type=int, default=1_000_000, help="events in the replay's history"
    )
    parser.add_argument(
        "--smtp-messages", type=int, default=10_000, help="messages per smtp-source run"
    )
    parser.add_argument(
        "--relay-rounds",
        type=int,
        default=3,
        help="relay-e2e: runs of Postline and of Postfix, in turns; medians are compared",
    )
    parser.add_argument(
        "--setups",
        default=DEFAULT_SETUPS,
        help="STORE/WORKERS[+projector][+mta]: store, HTTP worker processes, and the roles "
        "that run in processes of their own (default: %(default)s)",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    if shutil.which("wrk") is None and set(scenarios) - {"smtp-ingest", "relay-e2e", "replay"}:
        print("bench: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if {"smtp-ingest", "relay-e2e"} & set(scenarios) and (problem := smtp.tools_missing()):
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    try:
        setups = [s for s in args.setups.split(",") if parse_setup(s)]
    except ValueError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="postline-bench-") as tmp:
        if "replay" in scenarios:
            print("== replay on postgres ...", file=sys.stderr, flush=True)
            result = run_replay_scenario(args.replay_events)
            print(replay.summary(result), flush=True)
            results.append(result)
        for setup in setups:
            for name in scenarios:
                if "mta" in parse_setup(setup)[2] and name != "relay-e2e":
                    continue  # no mail leaves in the other scenarios
                if name == "replay":
                    continue  # (ran once above)
                print(f"== {name} on {setup} ...", file=sys.stderr, flush=True)
                if name == "smtp-ingest":
                    result = run_smtp_scenario(setup, Path(tmp), args.smtp_messages)
                    print(smtp_summary(result), flush=True)
                elif name == "relay-e2e":
                    result = run_relay_scenario(
                        setup, Path(tmp), args.smtp_messages, max(1, args.relay_rounds)
                    )
                    print(relay_summary(result), flush=True)
                else:
                    result = run_scenario(name, setup, args.duration, args.warmup, Path(tmp))
                    print(summary(result), flush=True)
                results.append(result)
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
    return (
        0
        if all(r["durable"] and r.get("postline", {}).get("non_2xx", 0) == 0 for r in results)
        else 1
    )


def summary(r: dict) -> str:
    p = r["postline"]
    return (
        f"{r['scenario']:<10} {r['setup']:<20} postline "
        f"{r['messages_per_s']:>9,.0f} msgs/s "
        f"(p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms) | no-op {r['noop_messages_per_s']:>9,.0f}"
        f" msgs/s | ratio {r['ratio_to_noop']:.2f} | non-2xx {p['non_2xx']} | "
        f"durable {r['durable']} | {r['events_per_transaction']} events/txn | server CPU/msg "
        f"{p.get('server_cpu_us_per_message')} us vs no-op "
        f"{r['noop'].get('server_cpu_us_per_message')} us | read models caught up "
        f"{r['read_model_lag_s']} s after | goal met: {r['goal_met']}"
    )


if __name__ == "__main__":
    sys.exit(main())
