"""Where Postline keeps its data: resolve the store URL and the data folder."""

import os
import socket
from pathlib import Path

from adapters.database import InvalidDatabaseUrl, StoreUrl, parse_url
from domain.dns_records import DnsSettings
from engine.domains import DomainConfig

__all__ = [
    "InvalidDatabaseUrl",
    "StoreUrl",
    "check_public_url",
    "data_dir",
    "domain_config",
    "public_url",
    "store_url",
]


def data_dir(given: str | None) -> Path:
    """`--data-dir`, else POSTLINE_DATA_DIR, else ./postline-data."""
    return Path(given or os.environ.get("POSTLINE_DATA_DIR") or "postline-data")


def store_url(given: str | None, data: Path) -> StoreUrl:
    """`--database-url`, else POSTLINE_DATABASE_URL, else SQLite in the data folder."""
    url = given or os.environ.get("POSTLINE_DATABASE_URL") or f"sqlite:///{data / 'postline.db'}"
    return parse_url(url)


def public_url() -> str | None:
    """`POSTLINE_PUBLIC_URL`: where recipients reach this installation's HTTP API (the base of
    unsubscribe links), e.g. `https://mail.example.net`."""
    return os.environ.get("POSTLINE_PUBLIC_URL") or None


def check_public_url(url: str) -> None:
    """ValueError unless `url` can head a link in a mail header: http(s), ASCII, no spaces."""
    if not url.isascii() or not url.startswith(("https://", "http://")) or " " in url:
        raise ValueError(f"{url!r} is not an http(s) URL in ASCII (use punycode for the host)")


def domain_config() -> DomainConfig:
    """How sending domains are set up, from the environment.

    `POSTLINE_SPF_MECHANISM` (default `a:<this host's name>`) is what each domain's SPF record
    must include; `POSTLINE_RETURN_PATH_DOMAIN` and `POSTLINE_TRACKING_HOST` add the optional
    return-path and click-tracking CNAMEs; `POSTLINE_DKIM_ALGORITHM` is rsa or ed25519;
    `POSTLINE_SYSTEM_SENDER` is the address setup instructions are mailed from.
    """
    spf = os.environ.get("POSTLINE_SPF_MECHANISM") or f"a:{socket.getfqdn()}"
    return DomainConfig(
        dns=DnsSettings(
            spf_mechanism=spf,
            return_path_host=os.environ.get("POSTLINE_RETURN_PATH_DOMAIN") or None,
            tracking_host=os.environ.get("POSTLINE_TRACKING_HOST") or None,
        ),
        dkim_algorithm=os.environ.get("POSTLINE_DKIM_ALGORITHM", "rsa"),
        system_sender=os.environ.get("POSTLINE_SYSTEM_SENDER") or None,
    )
