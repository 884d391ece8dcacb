"""`postline serve`'s SMTP options: listeners, TLS and relay policy from the command line."""

import argparse
import ipaddress
import socket
from pathlib import Path

from api.listen import parse_listen
from engine.relay import RelayPolicy
from engine.smtp_service import Listener, SmtpConfig, default_certificate

DEFAULT_LISTENER = "127.0.0.1:2525"


class SmtpConfigError(ValueError):
    """The SMTP options do not make sense together."""


def smtp_config(args: argparse.Namespace, data_dir: Path) -> SmtpConfig:
    """Read and check the SMTP options; generates the self-signed certificate if needed."""
    try:
        listeners = [
            Listener(*parse_listen(value), implicit_tls=False)
            for value in (args.smtp or [DEFAULT_LISTENER])
        ]
        listeners += [Listener(*parse_listen(v), implicit_tls=True) for v in args.smtps]
    except ValueError as error:
        raise SmtpConfigError(f"--smtp/--smtps: {error}") from None
    networks = []
    for value in filter(None, (v.strip() for v in args.smtp_trusted_networks.split(","))):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as error:
            raise SmtpConfigError(f"--smtp-trusted-networks: {error}") from None
    if networks and args.smtp_trusted_token is None:
        raise SmtpConfigError("--smtp-trusted-networks needs --smtp-trusted-token TOKEN_ID")
    if args.smtp_trusted_token is not None and not networks:
        raise SmtpConfigError("--smtp-trusted-token needs --smtp-trusted-networks")
    for name in ("smtp_max_messages_per_connection", "smtp_max_connections_per_account"):
        if getattr(args, name) < 0:
            raise SmtpConfigError(f"--{name.replace('_', '-')} must be 0 or more")
    if args.smtp_timeout <= 0:
        raise SmtpConfigError("--smtp-timeout must be more than 0")
    hostname = args.smtp_hostname or socket.gethostname() or "localhost"
    cert = args.smtp_tls_cert or args.tls_cert
    key = args.smtp_tls_key or (None if args.smtp_tls_cert else args.tls_key)
    if bool(cert) != bool(key):
        raise SmtpConfigError("--smtp-tls-cert and --smtp-tls-key go together")
    if not cert:
        cert, key = default_certificate(data_dir, hostname)
    for path in (cert, key):
        if not Path(path).is_file():
            raise SmtpConfigError(f"{path}: no such file")
    config = SmtpConfig(
        listeners=tuple(listeners),
        hostname=hostname,
        tls_cert=cert,
        tls_key=key,
        plaintext_auth=args.smtp_plaintext_auth,
        timeout=args.smtp_timeout,
        policy=RelayPolicy(
            max_messages_per_connection=args.smtp_max_messages_per_connection,
            max_connections_per_account=args.smtp_max_connections_per_account,
            trusted_networks=tuple(networks),
            trusted_token_id=args.smtp_trusted_token,
        ),
    )
    try:
        config.settings(listeners[0])  # fail now, not in a worker, on a bad certificate
    except (OSError, ValueError) as error:
        raise SmtpConfigError(f"cannot use the SMTP certificate {cert}: {error}") from None
    return config


def describe(config: SmtpConfig) -> list[str]:
    """Banner lines for the SMTP listeners."""
    lines = []
    for listener in config.listeners:
        host = f"[{listener.host}]" if ":" in listener.host else listener.host
        tls = "implicit TLS" if listener.implicit_tls else "STARTTLS"
        before_tls = config.plaintext_auth_on(listener) and not listener.implicit_tls
        auth = "AUTH PLAIN/LOGIN" + (" also before TLS" if before_tls else "")
        login = "username api, password an API token"
        lines.append(f"  SMTP:   {host}:{listener.port}  ({tls}; {auth}; {login})")
    return lines
