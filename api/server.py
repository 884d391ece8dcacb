"""`postline serve`: every role in one process, on one event loop."""

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shlex
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from api.app import VERSION, create_app
from api.listen import bind, parse_listen
from api.mta import MtaConfigError, mta_settings
from api.smtp import SmtpConfigError, describe, smtp_config
from engine.bootstrap import bootstrap
from engine.errors import StoreUnavailable
from engine.mta import Mta, MtaSettings
from engine.runtime import Runtime
from engine.settings import StoreUrl, data_dir, store_url
from engine.smtp_service import SmtpConfig, start_smtp

log = logging.getLogger("postline.serve")

EXAMPLE_MESSAGE = (
    '{"from":{"email":"hello@example.com","name":"Postline"},'
    '"to":[{"email":"you@example.com"}],'
    '"subject":"Hello from Postline","text":"It works."}'
)


class _Server(uvicorn.Server):
    """uvicorn, minus re-raising the stop signal after shutdown: `serve` returns instead, so
    the committer and the stores are closed and the process exits 0."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _open_runtime(
    url: StoreUrl,
    wait: float,
    folder: Path,
    *,
    projections: bool = True,
    sender_policy: str = "verified",
) -> Runtime:
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            runtime = Runtime(
                url, projections=projections, data_dir=folder, sender_policy=sender_policy
            )
            runtime.start()
        except StoreUnavailable as error:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("waiting for the database at %s: %s", url.display, error)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        return runtime


def _banner(
    base: str | None,
    url: StoreUrl,
    credentials: dict[str, Any] | None,
    workers: int = 1,
    smtp: SmtpConfig | None = None,
    delivery: MtaSettings | None = None,
    sender_policy: str = "verified",
) -> str:
    lines = [f"Postline {VERSION} is running" + (f" ({workers} workers)" if workers > 1 else "")]
    if base is not None:
        lines += [
            f"  API:    {base}  (transactional: /api/send, bulk stream: /bulk/api/send)",
            f"  Docs:   {base}/docs",
        ]
    if smtp is not None:
        lines += describe(smtp)
    if delivery is not None:
        via = (
            f"via {delivery.smarthost[0]}:{delivery.smarthost[1]}"
            if delivery.smarthost
            else f"to the recipients' MX hosts, port {delivery.mx_port}"
        )
        lines.append(f"  MTA:    delivers {via}, as {delivery.helo}")
    lines.append(f"  Store:  {url.display}")
    if sender_policy == "any":
        lines.append(
            "  Senders: any domain (--sender-policy any, for development; production "
            "sends only from verified sending domains)"
        )
    else:
        lines.append("  Senders: verified sending domains only (/api/accounts/ID/sending_domains)")
    if credentials is not None and base is not None:
        token = str(credentials["api_token"])
        curl = (
            f"curl -sS {base}/api/send -H {shlex.quote('Authorization: Bearer ' + token)} "
            f"-H 'Content-Type: application/json' -d {shlex.quote(EXAMPLE_MESSAGE)}"
        )
        lines += [
            f"  Account: {credentials['account_id']}",
            f"  Token:  {token}",
            "",
            "Send a message:",
            f"  {curl}",
        ]
    return "\n".join(lines)


ROLES = ("api", "smtp", "mta", "projector")


@dataclass(slots=True)
class _Listeners:
    """What every worker serves: sockets bound before the workers fork, and the settings of
    the SMTP relay and the MTA (None when this process does not run them)."""

    http: socket.socket | None = None
    smtp: list[socket.socket] = field(default_factory=list)
    smtp_config: SmtpConfig | None = None
    delivery: MtaSettings | None = None

    def close(self) -> None:
        for sock in [self.http, *self.smtp]:
            if sock is not None:
                sock.close()


def serve(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.http)
        roles = _roles(args.roles)
    except ValueError as error:
        print(f"postline: {error}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("postline: --workers must be at least 1", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("postline: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    for path in (args.tls_cert, args.tls_key):
        if path and not Path(path).is_file():
            print(f"postline: {path}: no such file", file=sys.stderr)
            return 2
    folder = data_dir(args.data_dir)
    smtp: SmtpConfig | None = None
    if "smtp" in roles:
        try:
            smtp = smtp_config(args, folder)
        except SmtpConfigError as error:
            print(f"postline: {error}", file=sys.stderr)
            return 2
    delivery: MtaSettings | None = None
    if "mta" in roles:
        try:
            delivery = mta_settings(args)
        except MtaConfigError as error:
            print(f"postline: {error}", file=sys.stderr)
            return 2
    url = store_url(args.database_url, folder)
    runtime = _open_runtime(
        url,
        args.wait_for_database,
        folder,
        projections="projector" in roles,
        sender_policy=args.sender_policy,
    )
    listeners = _Listeners(delivery=delivery)
    try:
        credentials = bootstrap(runtime.store, folder) if args.bootstrap else None
        if smtp is not None:
            _check_trusted_token(runtime, smtp)
        if not roles & {"api", "smtp", "mta"}:
            print(f"Postline {VERSION}: read-model projector on {url.display}", flush=True)
            _run(_until_signalled(runtime))
            return 0
        try:
            if "api" in roles:
                listeners.http = bind(host, port)
            if smtp is not None:
                listeners.smtp = [bind(lst.host, lst.port) for lst in smtp.listeners]
                smtp = smtp.with_ports([s.getsockname()[1] for s in listeners.smtp])
                listeners.smtp_config = smtp
        except OSError as error:
            print(f"postline: cannot listen: {error}", file=sys.stderr)
            return 2
        base = None
        if listeners.http is not None:
            scheme = "https" if args.tls_cert else "http"
            shown_host = f"[{host}]" if ":" in host else host
            base = f"{scheme}://{shown_host}:{listeners.http.getsockname()[1]}"
        banner = _banner(base, url, credentials, args.workers, smtp, delivery, args.sender_policy)
        print(banner, flush=True)
        if base is not None:
            print(f"Listening on {base}", flush=True)
        if args.workers == 1:
            _run(_main(args, runtime, listeners))
            return 0
    except StoreUnavailable as error:
        print(f"postline: the database is unavailable: {error}", file=sys.stderr)
        return 3
    finally:
        runtime.close()
        if args.workers == 1:
            listeners.close()
    # Several workers: the listening sockets are shared by forked processes, each with its own
    # store connections and group committer; the first one also runs the projectors.
    return _supervise(args, url, listeners, projections="projector" in roles)


def _check_trusted_token(runtime: Runtime, smtp: SmtpConfig) -> None:
    token_id = smtp.policy.trusted_token_id
    if token_id is not None and runtime.auth.by_token_id(token_id) is None:
        log.warning(
            "--smtp-trusted-token %d: no such token (or revoked); trusted networks will be "
            "refused until it exists",
            token_id,
        )


async def _main(args: argparse.Namespace, runtime: Runtime, listeners: _Listeners) -> None:
    """Serve HTTP and SMTP and deliver mail on this process's event loop until told to stop."""
    smtp = listeners.smtp_config
    servers = [] if smtp is None else await start_smtp(runtime, smtp, listeners.smtp)
    delivery = None
    if listeners.delivery is not None:
        delivery = asyncio.create_task(Mta(runtime, listeners.delivery).run())
    try:
        if listeners.http is not None:
            await _server(args, runtime).serve(sockets=[listeners.http])
        else:
            await _until_signalled(runtime)
    finally:
        for server in servers:
            server.close()
        if delivery is not None:
            delivery.cancel()
            await asyncio.gather(delivery, return_exceptions=True)


def _roles(value: str) -> set[str]:
    roles = {r.strip() for r in value.split(",") if r.strip()}
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"--roles: choose from {', '.join(ROLES)} (got {value!r})")
    return roles


def _server(args: argparse.Namespace, runtime: Runtime) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(runtime, enable_noop=args.enable_noop_endpoint),
        http="httptools",
        loop="none",
        lifespan="on",
        access_log=args.access_log,
        log_config=None,
        log_level=args.log_level,
        server_header=False,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=args.graceful_timeout,
        ssl_certfile=args.tls_cert,
        ssl_keyfile=args.tls_key,
    )
    return _Server(config)


async def _until_signalled(runtime: Runtime) -> None:
    """Run the background roles (projectors) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start_background()
    await stop.wait()
    await runtime.stop_background()


RESTART_BACKOFF_SECONDS = (1, 2, 5, 10, 30)


def _supervise(
    args: argparse.Namespace, url: StoreUrl, listeners: _Listeners, *, projections: bool
) -> int:
    """Fork the workers, restart any that dies, stop them all on SIGINT or SIGTERM."""
    children: dict[int, int] = {}  # pid -> worker number
    failures = [0] * args.workers
    stopping = False

    def spawn(number: int) -> None:
        pid = os.fork()
        if pid == 0:
            os._exit(_worker(args, url, listeners, projections=projections and number == 0))
        children[pid] = number

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for number in range(args.workers):
            spawn(number)
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            number = children.pop(pid)
            if stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            failures[number] += 1
            if failures[number] > len(RESTART_BACKOFF_SECONDS):
                log.error("worker %d keeps failing (exit %d); stopping", number, code)
                stop(signal.SIGTERM, None)
                return 1
            delay = RESTART_BACKOFF_SECONDS[failures[number] - 1]
            log.error("worker %d exited (%d); restarting in %d s", number, code, delay)
            time.sleep(delay)
            if not stopping:
                spawn(number)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        listeners.close()
    return 0


def _worker(
    args: argparse.Namespace, url: StoreUrl, listeners: _Listeners, *, projections: bool
) -> int:
    """One forked worker: its own store connections, committer, HTTP and SMTP servers."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    try:
        runtime = _open_runtime(
            url,
            args.wait_for_database,
            data_dir(args.data_dir),
            projections=projections,
            sender_policy=args.sender_policy,
        )
    except StoreUnavailable as error:
        log.error("worker cannot open the store: %s", error)
        return 3
    try:
        _run(_main(args, runtime, listeners))
    except Exception:
        log.exception("worker failed")
        return 1
    finally:
        runtime.close()
    return 0


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the request path.

    Everything allocated at start-up is moved out of the collector's sight (`gc.freeze`), and
    young-generation collections run every 10,000 allocations instead of 700: each request
    allocates hundreds of short-lived objects, and at the default threshold the collector ran
    several times per request batch, adding tens of milliseconds to tail latency.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _run(main: Any) -> None:
    _tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - platforms without uvloop
        asyncio.run(main)
    else:
        uvloop.run(main)
