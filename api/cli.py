"""The `postline` command line."""

import argparse
import csv
import getpass
import io
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api import mta
from api.app import VERSION
from domain.activity import Actor, operator_actor
from domain.addresses import is_valid_address
from domain.feedback_reports import NotAReport, read_report
from domain.reports import REPORTS
from domain.sending_domains import SendingDomain
from domain.suppressions import TYPES as SUPPRESSION_TYPES
from engine.accounts import UnknownAccount, issue_token
from engine.bootstrap import bootstrap
from engine.dkim_keys import InvalidKeys, create_key
from engine.domains import NoSuchDomain, domain_named, expected, get_domain, rotate_dkim
from engine.errors import Conflict, StoreUnavailable
from engine.opt_outs import UnknownMessage, complain
from engine.reports import run_report
from engine.runtime import Runtime
from engine.settings import InvalidDatabaseUrl, data_dir, store_url
from engine.status import status
from engine.suppressions import suppress
from projections.replay import rebuild
from projections.suppressions import list_suppressions

log = logging.getLogger("postline")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_DATA = 65  # sysexits EX_DATAERR: a mail filter piping reports in sees a bad one


def _store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="sqlite:///path.db or postgresql://user@host:port/db "
        "(default: $POSTLINE_DATABASE_URL, else SQLite in the data folder)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="data folder (default: $POSTLINE_DATA_DIR, else ./postline-data)",
    )


def _json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _smtp_arguments(serve: argparse.ArgumentParser) -> None:
    smtp = serve.add_argument_group("SMTP relay")
    smtp.add_argument(
        "--smtp",
        action="append",
        metavar="HOST:PORT",
        help="SMTP listener with STARTTLS; repeat for more ports (default 127.0.0.1:2525)",
    )
    smtp.add_argument(
        "--smtps",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="SMTP listener with implicit TLS (port 465 style); repeatable",
    )
    smtp.add_argument(
        "--smtp-hostname",
        metavar="NAME",
        help="the name the relay greets with and writes in Received headers "
        "(default: this host's name)",
    )
    smtp.add_argument(
        "--smtp-tls-cert",
        metavar="FILE",
        help="certificate for STARTTLS and implicit TLS (default: --tls-cert, else a "
        "self-signed one generated into the data folder)",
    )
    smtp.add_argument("--smtp-tls-key", metavar="FILE", help="private key for --smtp-tls-cert")
    smtp.add_argument(
        "--smtp-plaintext-auth",
        choices=["loopback", "always", "never"],
        default="loopback",
        help="offer AUTH before STARTTLS: on loopback listeners only (default), always, never",
    )
    smtp.add_argument(
        "--smtp-trusted-networks",
        metavar="CIDR[,CIDR]",
        default="",
        help="clients in these networks may send without AUTH, as --smtp-trusted-token",
    )
    smtp.add_argument(
        "--smtp-trusted-token",
        type=int,
        metavar="TOKEN_ID",
        help="id of the API token trusted networks send as (see `tokens create --json`)",
    )
    smtp.add_argument(
        "--smtp-max-messages-per-connection",
        type=int,
        default=100,
        metavar="N",
        help="messages per SMTP connection (default 100; 0: no limit)",
    )
    smtp.add_argument(
        "--smtp-max-connections-per-account",
        type=int,
        default=10,
        metavar="N",
        help="concurrent authenticated connections per account, per process "
        "(default 10; 0: no limit)",
    )
    smtp.add_argument(
        "--smtp-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="idle time before the relay answers 421 4.4.2 and hangs up (default 300)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postline", description="Event-sourced email delivery engine."
    )
    parser.add_argument("--version", action="version", version=f"postline {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the HTTP API, the SMTP relay and every background role"
    )
    _store_arguments(serve)
    serve.add_argument(
        "--http",
        default="127.0.0.1:8025",
        metavar="HOST:PORT",
        help="HTTP listener (default 127.0.0.1:8025; port 0 picks a free port)",
    )
    serve.add_argument("--tls-cert", metavar="FILE", help="certificate (PEM) to serve HTTPS")
    serve.add_argument("--tls-key", metavar="FILE", help="private key (PEM) for --tls-cert")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="HTTP worker processes sharing the listener (default 1: everything in one process)",
    )
    serve.add_argument(
        "--roles",
        default="api,smtp,mta,projector",
        metavar="ROLES",
        help="what this process runs, comma-separated: api (HTTP), smtp, mta (delivery), "
        "projector (default: all four)",
    )
    serve.add_argument(
        "--sender-policy",
        choices=["verified", "any"],
        default=os.environ.get("POSTLINE_SENDER_POLICY", "verified"),
        help="who may send from which domain: only an account's DNS-verified sending domains "
        "(verified, the default; $POSTLINE_SENDER_POLICY) or any domain (any: development only)",
    )
    _smtp_arguments(serve)
    mta.add_arguments(serve)
    serve.add_argument(
        "--bootstrap",
        action="store_true",
        help="create an account and token on first run and print how to use them",
    )
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.add_argument(
        "--enable-noop-endpoint",
        action="store_true",
        help="serve POST /api/_noop, the benchmark's framework ceiling",
    )
    serve.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="on SIGTERM, how long to let open requests finish (default 10)",
    )
    serve.add_argument(
        "--wait-for-database",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the database at start-up (default 60)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    boot = commands.add_parser(
        "bootstrap", help="create the first account and API token (idempotent)"
    )
    _store_arguments(boot)
    _json_argument(boot)

    tokens = commands.add_parser("tokens", help="manage API tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="issue an API token for an account")
    _store_arguments(create)
    create.add_argument("--account", type=int, required=True, metavar="ID", help="account id")
    create.add_argument("--name", required=True, help="a name to recognise the token by")
    _json_argument(create)

    keys = commands.add_parser("dkim", help="DKIM signing keys")
    key_commands = keys.add_subparsers(dest="dkim_command", required=True, metavar="ACTION")
    keygen = key_commands.add_parser(
        "keygen", help="generate a signing key and print the DNS record to publish"
    )
    keygen.add_argument("--domain", required=True, help="the domain that signs (d=)")
    keygen.add_argument("--selector", required=True, help="the key's selector (s=), e.g. pl1")
    keygen.add_argument("--algorithm", choices=["rsa", "ed25519"], default="rsa")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")
    keygen.add_argument(
        "--out", metavar="DIR", help="where to write the key (default: <data dir>/dkim)"
    )
    keygen.add_argument("--data-dir", metavar="DIR", help="data folder (default ./postline-data)")
    _json_argument(keygen)
    rotate = key_commands.add_parser(
        "rotate",
        help="give a sending domain a new DKIM key on its standby selector; the current key "
        "signs until DNS publishes the new one",
    )
    _store_arguments(rotate)
    rotate.add_argument("--account", type=int, required=True, metavar="ID", help="account id")
    rotate.add_argument("--domain", required=True, help="the sending domain")
    _json_argument(rotate)

    listed = commands.add_parser("suppressions", help="import and export the suppression list")
    list_commands = listed.add_subparsers(
        dest="suppressions_command", required=True, metavar="ACTION"
    )
    importer = list_commands.add_parser(
        "import", help="suppress the addresses of a CSV file (an `email` column, or the first)"
    )
    _store_arguments(importer)
    importer.add_argument("file", metavar="FILE.csv", help="the CSV file (- for standard input)")
    importer.add_argument("--account", type=int, required=True, metavar="ID")
    importer.add_argument("--domain", required=True, help="the sending domain they apply to")
    importer.add_argument(
        "--stream", choices=["transactional", "bulk", "any"], default="any", help="default any"
    )
    importer.add_argument(
        "--type", dest="kind", choices=list(SUPPRESSION_TYPES), default="manual import"
    )
    _json_argument(importer)
    exporter = list_commands.add_parser("export", help="write the suppression list as CSV")
    _store_arguments(exporter)
    exporter.add_argument("--account", type=int, required=True, metavar="ID")
    exporter.add_argument("--out", metavar="FILE", help="where to write (default: standard out)")

    report = commands.add_parser(
        "report",
        help="a report computed by replaying the log: "
        + ", ".join(f"{name} ({kind.title.lower()})" for name, kind in REPORTS.items()),
    )
    _store_arguments(report)
    report.add_argument("name", choices=list(REPORTS), metavar="NAME", help=", ".join(REPORTS))
    report.add_argument("--since", type=_moment, metavar="TIME", help="ISO 8601, inclusive")
    report.add_argument("--until", type=_moment, metavar="TIME", help="ISO 8601, exclusive")
    _json_argument(report)

    state = commands.add_parser(
        "status", help="the log's head, how far behind each read model is, the delivery queue"
    )
    _store_arguments(state)
    _json_argument(state)

    complaints = commands.add_parser("complaints", help="spam complaints from feedback loops")
    complaint_commands = complaints.add_subparsers(
        dest="complaints_command", required=True, metavar="ACTION"
    )
    ingest = complaint_commands.add_parser(
        "ingest",
        help="record the complaint of an RFC 5965 feedback report (pipe the report in from "
        "the mailbox that receives them)",
    )
    _store_arguments(ingest)
    ingest.add_argument(
        "file", nargs="?", default="-", metavar="REPORT", help="the report (default: stdin)"
    )
    _json_argument(ingest)

    replay = commands.add_parser(
        "replay",
        help="rebuild read models from the event log into fresh tables, swapped in at the end "
        "(the running installation keeps serving the old ones meanwhile)",
    )
    _store_arguments(replay)
    replay.add_argument(
        "--read-model",
        action="append",
        metavar="NAME",
        help="rebuild only this read model (repeatable; default: all of them)",
    )
    _json_argument(replay)
    return parser


def _open(args: argparse.Namespace) -> tuple[Runtime, Path]:
    folder = data_dir(args.data_dir)
    url = store_url(args.database_url, folder)
    return Runtime(url, data_dir=folder), folder


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if args.json else text)


def cmd_bootstrap(args: argparse.Namespace) -> int:
    runtime, folder = _open(args)
    try:
        credentials = bootstrap(runtime.store, folder)
    finally:
        runtime.close()
    _print(
        args,
        {
            "account_id": credentials["account_id"],
            "api_token": credentials["api_token"],
            "token_id": credentials.get("token_id"),
        },
        f"account {credentials['account_id']}\napi token {credentials['api_token']}",
    )
    return 0


def _operator() -> Actor:
    """The person at this command line, as the audit log names them."""
    try:
        return operator_actor(getpass.getuser())
    except (KeyError, OSError):  # no login name (a container's nameless uid)
        return operator_actor("postline cli")


def cmd_tokens_create(args: argparse.Namespace) -> int:
    runtime, _ = _open(args)
    try:
        issued = issue_token(
            runtime.store, args.account, args.name, created_by="postline cli", actor=_operator()
        )
    except UnknownAccount as error:
        print(f"postline: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        runtime.close()
    _print(
        args,
        {
            "id": issued.token_id,
            "account_id": issued.account_id,
            "name": issued.name,
            "token": issued.token,
        },
        f"token {issued.token_id} for account {issued.account_id} ({issued.name}):\n"
        f"{issued.token}\nKeep it now: it is stored only as a digest and cannot be shown again.",
    )
    return 0


def _moment(value: str) -> datetime:
    """An ISO 8601 time for --since/--until (UTC when it names no zone)."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_report(args: argparse.Namespace) -> int:
    def show(position: int, head: int) -> None:
        print(f"\r{args.name}: {100 * position / head:5.1f}% of the log", end="", file=sys.stderr)

    runtime, _ = _open(args)
    try:
        report = run_report(
            runtime.store, args.name, args.since, args.until, None if args.json else show
        )
    finally:
        runtime.close()
    if not args.json:
        print("\r" + " " * 40 + "\r", end="", file=sys.stderr)
    rows = report.rows()
    widths = {c: max([len(c)] + [len(str(r[c])) for r in rows]) for c in report.columns}
    table = [report.title, ""]
    table.append("  ".join(c.ljust(widths[c]) for c in report.columns))
    table += ["  ".join(str(r[c]).ljust(widths[c]) for c in report.columns) for r in rows]
    if not rows:
        table.append("(nothing in this window)")
    _print(
        args,
        {
            "report": args.name,
            "since": args.since.isoformat() if args.since else None,
            "until": args.until.isoformat() if args.until else None,
            "rows": rows,
        },
        "\n".join(table),
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    runtime, _ = _open(args)
    try:
        now = status(runtime)
    finally:
        runtime.close()
    lines = [f"log head   {now.head}", f"queued     {now.queued} messages", ""]
    lines += [f"{'follower':<20} {'kind':<11} {'position':>10} {'behind':>8}"]
    lines += [f"{f.name:<20} {f.kind:<11} {f.position:>10} {f.lag:>8}" for f in now.followers]
    _print(
        args,
        {
            "head": now.head,
            "queued": now.queued,
            "followers": [
                {"name": f.name, "kind": f.kind, "position": f.position, "behind": f.lag}
                for f in now.followers
            ],
        },
        "\n".join(lines),
    )
    return 0


def cmd_complaints_ingest(args: argparse.Namespace) -> int:
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        complaint = read_report(data)
    except OSError as error:
        print(f"postline: {args.file}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except NotAReport as error:
        print(f"postline: {args.file}: {error}", file=sys.stderr)
        return EXIT_DATA
    runtime, _ = _open(args)
    try:
        message = complain(runtime.store, complaint)
    except UnknownMessage as error:
        print(f"postline: {args.file}: {error}", file=sys.stderr)
        return EXIT_DATA
    except Conflict:
        print(f"postline: {args.file}: the message kept changing; try again", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        runtime.close()
    recorded = "spam" in message.opted_out
    _print(
        args,
        {
            "message_id": str(complaint.message_id),
            "recipient": message.recipient,
            "feedback_type": complaint.feedback_type,
            "recorded": recorded,
        },
        f"{complaint.feedback_type} complaint from {message.recipient} about message "
        f"{complaint.message_id}"
        + ("" if recorded else ": not recorded, the message was never delivered"),
    )
    return 0


def _named_domain(runtime: Runtime, args: argparse.Namespace) -> SendingDomain | None:
    """The sending domain `--domain` of `--account`; None (and says so) when there is none."""
    try:
        return domain_named(runtime.store, args.account, args.domain)
    except NoSuchDomain:
        print(
            f"postline: account {args.account} has no sending domain {args.domain}", file=sys.stderr
        )
        return None


def cmd_dkim_rotate(args: argparse.Namespace) -> int:
    runtime, _ = _open(args)
    try:
        domain = _named_domain(runtime, args)
        if domain is None:
            return EXIT_USAGE
        config = runtime.domain_config
        selector = rotate_dkim(
            runtime.store, runtime.secrets, config, args.account, domain.domain_id, _operator()
        )
        domain = get_domain(runtime.store, args.account, domain.domain_id)
        record = next(r for r in expected(domain, config) if r.name == f"{selector}._domainkey")
    finally:
        runtime.close()
    _print(
        args,
        {
            "domain": domain.name,
            "selector": selector,
            "record": {"type": record.type, "name": record.domain, "value": record.value},
        },
        f"{domain.name}: a new key for selector {selector}. Publish\n"
        f'  {record.domain} TXT "{record.value}"\n'
        "The current key signs until a DNS check finds this record; then the new one does.",
    )
    return 0


EXPORT_COLUMNS = ("id", "email", "type", "sending_stream", "domain_name", "created_at")


def cmd_suppressions_import(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"postline: {args.file}: {error}", file=sys.stderr)
        return EXIT_USAGE
    rows = list(csv.reader(io.StringIO(text)))
    column, first_line = 0, 1
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if "email" in header:
        column, first_line, rows = header.index("email"), 2, rows[1:]
    runtime, _ = _open(args)
    added, invalid = 0, []
    operator = _operator()
    try:
        domain = _named_domain(runtime, args)
        if domain is None:
            return EXIT_USAGE
        for line, row in enumerate(rows, first_line):
            email = row[column].strip() if len(row) > column else ""
            if not is_valid_address(email):
                invalid.append({"line": line, "value": email})
                continue
            suppress(
                runtime.store,
                args.account,
                email,
                domain.name,
                args.stream,
                args.kind,
                None,
                operator,
            )
            added += 1
            if added % 1000 == 0:
                print(f"\r{added} suppressed", end="", file=sys.stderr, flush=True)
    finally:
        runtime.close()
    if added >= 1000:
        print(file=sys.stderr)
    lines = ", ".join(str(i["line"]) for i in invalid[:20])
    _print(
        args,
        {"suppressed": added, "invalid": invalid},
        f"{added} addresses suppressed for {domain.name} ({args.stream})"
        + (f"; {len(invalid)} invalid, on line(s) {lines}" if invalid else ""),
    )
    return 0 if not invalid else 1


def cmd_suppressions_export(args: argparse.Namespace) -> int:
    runtime, _ = _open(args)
    try:
        runtime.suppressions.catch_up()
        records: list[dict[str, Any]] = []
        after = None
        while page := list_suppressions(runtime.store.db, args.account, after=after):
            records += page
            after = page[-1]["id"]
    finally:
        runtime.close()
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    if args.out:
        Path(args.out).write_text(out.getvalue(), "utf-8")
        print(f"{len(records)} suppressions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out.getvalue())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    runtime, _ = _open(args)
    try:
        known = {p.projection.name: p for p in runtime.projectors}
        unknown = [name for name in args.read_model or () if name not in known]
        if unknown:
            print(
                f"postline: no read model {', '.join(map(repr, unknown))}; "
                f"read models: {', '.join(known)}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        chosen = [known[name] for name in dict.fromkeys(args.read_model or known)]
        names = chosen[0].projection.name if len(chosen) == 1 else f"{len(chosen)} read models"
        began = time.monotonic()
        head = runtime.store.head()
        results = rebuild(chosen, progress=None if args.json else _progress(names, head))
        seconds = time.monotonic() - began
        position = min(p.position() for p in chosen)  # each one is there or further
    finally:
        runtime.close()
    if not args.json:
        print(file=sys.stderr)
        for name, events in results.items():
            print(f"{name}: rebuilt from {events} events", file=sys.stderr)
    _print(
        args,
        {"log_position": position, "seconds": round(seconds, 3), "projections": results},
        f"read models rebuilt and swapped in up to log position {position} in {seconds:.1f} s",
    )
    return 0


def cmd_dkim_keygen(args: argparse.Namespace) -> int:
    directory = Path(args.out) if args.out else data_dir(args.data_dir) / "dkim"
    try:
        key = create_key(directory, args.domain, args.selector, args.algorithm, args.bits)
    except InvalidKeys as error:
        print(f"postline: {error}", file=sys.stderr)
        return EXIT_USAGE
    snippet = (
        f'[[key]]\ndomain = "{key.domain}"\nselector = "{key.selector}"\n'
        f'private_key = "{key.path.resolve()}"'
    )
    _print(
        args,
        {
            "private_key": str(key.path.resolve()),
            "dns_record": {"name": key.record_name, "type": "TXT", "value": key.record_value},
            "keys_file_entry": snippet,
        },
        f"private key: {key.path}\n\npublish in DNS:\n  {key.record_name}  TXT  "
        f'"{key.record_value}"\n\nand list the key in the file $POSTLINE_DKIM_KEYS names:\n'
        f"{snippet}",
    )
    return 0


def _progress(name: str, head: int) -> Any:
    def report(position: int) -> None:
        share = min(100.0, 100 * position / head) if head else 100.0
        bar = "#" * int(share * 0.3)
        print(
            f"\r{name}: [{bar:<30}] {share:5.1f}% ({min(position, head)}/{head})",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "warning").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd logs every SMTP command at INFO, apscheduler every run of the MTA's tick: only
    # worth it when debugging.
    chatty = logging.DEBUG if getattr(args, "log_level", "") == "debug" else logging.WARNING
    for name in ("mail.log", "apscheduler"):
        logging.getLogger(name).setLevel(chatty)
    try:
        if args.command == "serve":
            from api.server import serve

            return serve(args)
        if args.command == "bootstrap":
            return cmd_bootstrap(args)
        if args.command == "tokens":
            return cmd_tokens_create(args)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "suppressions":
            if args.suppressions_command == "import":
                return cmd_suppressions_import(args)
            return cmd_suppressions_export(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "complaints":
            return cmd_complaints_ingest(args)
        if args.command == "dkim":
            if args.dkim_command == "rotate":
                return cmd_dkim_rotate(args)
            return cmd_dkim_keygen(args)
    except InvalidDatabaseUrl as error:
        print(f"postline: invalid database URL: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StoreUnavailable as error:
        print(f"postline: the database is unavailable: {error}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
