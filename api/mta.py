"""`postline serve`'s delivery options: how the MTA role reaches the recipients' MX hosts."""

import argparse
import os
import socket
from datetime import timedelta

from api.listen import parse_listen
from engine.mta import MtaSettings
from engine.policy import bounce_rules, dkim_signer, retry_schedule, shaping
from engine.settings import check_public_url, public_url

MX_PORT_ENV = "POSTLINE_MX_PORT"
RETURN_PATH_ENV = "POSTLINE_RETURN_PATH_DOMAIN"


class MtaConfigError(ValueError):
    """The delivery options or policy files cannot be used."""


def add_arguments(serve: argparse.ArgumentParser) -> None:
    mta = serve.add_argument_group("delivery (the mta role)")
    mta.add_argument(
        "--mx-port",
        type=int,
        metavar="PORT",
        help=f"port of the recipients' MX hosts (default: ${MX_PORT_ENV}, else 25)",
    )
    mta.add_argument(
        "--smarthost",
        metavar="HOST:PORT",
        help="hand all mail to this relay instead of the recipients' MX hosts",
    )
    mta.add_argument(
        "--helo-name",
        metavar="NAME",
        help="the name the MTA introduces itself with (default: --smtp-hostname, else this "
        "host's name); should match the sending IP's reverse DNS",
    )
    mta.add_argument(
        "--delivery-lease",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long a worker holds the messages it claimed; a worker that dies gives them "
        "back when this runs out (default 600)",
    )
    mta.add_argument(
        "--return-path-domain",
        metavar="DOMAIN",
        help=f"envelope sender bounces+<message id>@DOMAIN (VERP; default: ${RETURN_PATH_ENV}, "
        "else the message's own sender)",
    )


def mta_settings(args: argparse.Namespace) -> MtaSettings:
    """The MTA's settings from the options; checks the policy files it will load."""
    try:
        port = args.mx_port or int(os.environ.get(MX_PORT_ENV) or 25)
        smarthost = parse_listen(args.smarthost) if args.smarthost else None
    except ValueError as error:
        raise MtaConfigError(f"--mx-port/--smarthost: {error}") from None
    if not 0 < port < 65536:
        raise MtaConfigError(f"--mx-port: {port} is not a port")
    if args.delivery_lease <= 0:
        raise MtaConfigError("--delivery-lease must be more than 0")
    try:
        shaping()
        bounce_rules()
        retry_schedule()
    except ValueError as error:
        raise MtaConfigError(f"delivery policy: {error}") from None
    try:
        dkim_signer()
    except ValueError as error:
        raise MtaConfigError(f"DKIM keys: {error}") from None
    url = public_url()
    if url is not None:
        try:
            check_public_url(url)
        except ValueError as error:
            raise MtaConfigError(f"POSTLINE_PUBLIC_URL: {error}") from None
    return MtaSettings(
        helo=args.helo_name or args.smtp_hostname or socket.gethostname(),
        mx_port=port,
        smarthost=smarthost,
        return_path_domain=args.return_path_domain or os.environ.get(RETURN_PATH_ENV) or None,
        lease=timedelta(seconds=args.delivery_lease),
    )
