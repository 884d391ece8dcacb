"""DKIM keys on disk: `postline dkim keygen` writes one and says what to publish in DNS."""

import os
from dataclasses import dataclass
from pathlib import Path

from adapters.dkim_signing import InvalidKeys, generate
from domain.addresses import ascii_domain

__all__ = ["CreatedKey", "InvalidKeys", "create_key"]


@dataclass(frozen=True, slots=True)
class CreatedKey:
    path: Path
    domain: str
    selector: str
    record_name: str  # <selector>._domainkey.<domain>
    record_value: str  # v=DKIM1; k=...; p=...


def create_key(
    directory: Path, domain: str, selector: str, algorithm: str = "rsa", bits: int = 2048
) -> CreatedKey:
    """Generate a key into `directory` (`<selector>.<domain>.pem`, mode 0600); never overwrites."""
    ascii_name = ascii_domain(domain)
    if ascii_name is None:
        raise InvalidKeys(f"{domain!r} is not a domain name")
    if not selector.replace("-", "").replace("_", "").isalnum() or len(selector) > 63:
        raise InvalidKeys(f"{selector!r} is not a selector (letters, digits, - and _)")
    pem, record = generate(algorithm, bits)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{selector}.{ascii_name}.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidKeys(f"{path} exists already; choose another selector") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return CreatedKey(path, ascii_name, selector, f"{selector}._domainkey.{ascii_name}", record)
