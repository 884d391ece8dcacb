"""DKIM signing with dkimpy: keys per domain, RSA and Ed25519, one or both signatures.

Keys are listed in a TOML file (`POSTLINE_DKIM_KEYS`) until sending domains generate their own:

    [[key]]
    domain = "example.com"
    selector = "pl1"
    private_key = "/etc/postline/dkim/pl1.example.com.pem"   # RSA or Ed25519, PEM

A message is signed by every key of its sender's domain, or of the nearest parent domain that
has keys (a subdomain signs with its organisation's key, which DMARC's relaxed alignment
accepts). `postline dkim keygen` writes a key and prints the DNS record to publish.
"""

import base64
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

KEYS_ENV = "POSTLINE_DKIM_KEYS"
# What we sign: the headers a receiver shows or relies on (RFC 6376 §5.4.1), From oversigned
# so that a second From cannot be added after signing.
SIGNED_HEADERS = [
    b"from",
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
]


class InvalidKeys(ValueError):
    """A DKIM key file or key that cannot be used; the message says which."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    domain: str
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    secret: bytes  # what dkimpy takes: PEM for RSA, base64 raw seed for Ed25519
    rsa_key: rsa.RSAPrivateKey | None = field(default=None, compare=False, repr=False)

    def sign(self, message: bytes) -> bytes:
        """The `DKIM-Signature:` header for `message` (CRLF line ends)."""
        signer = _Dkim(message)
        signer.rsa_key = self.rsa_key
        return signer.sign(
            self.selector.encode(),
            self.domain.encode(),
            self.secret,
            canonicalize=(b"relaxed", b"relaxed"),
            signature_algorithm=self.algorithm.encode(),
            include_headers=SIGNED_HEADERS,
        )


class _Dkim(dkim.DKIM):  # type: ignore[misc]
    """dkimpy's signer, with the RSA signature itself made by OpenSSL (`cryptography`).

    dkimpy canonicalises, hashes and builds the header; its RSA operation is pure-Python
    big-integer arithmetic, about 6 ms per 2048-bit signature against well under 1 ms in
    OpenSSL, which also releases the GIL. `gen_header` signs through `pk.sign(digest)` on its
    Ed25519 branch, so the RSA case takes that branch with a key object whose `sign` is
    OpenSSL's PKCS#1 v1.5 over the same SHA-256 digest; the header's `a=` tag was already set
    from the real algorithm. A test checks the result with dkimpy's own verifier.
    """

    rsa_key: rsa.RSAPrivateKey | None = None

    def gen_header(self, *args: Any, **kwargs: Any) -> bytes:
        if self.signature_algorithm != b"rsa-sha256" or self.rsa_key is None:
            return super().gen_header(*args, **kwargs)
        fields, include_headers, canon_policy, header_name, _pk, *rest = args
        self.signature_algorithm = b"ed25519-sha256"  # the branch that calls pk.sign(digest)
        try:
            return super().gen_header(
                fields,
                include_headers,
                canon_policy,
                header_name,
                _OpenSslRsa(self.rsa_key),
                *rest,
                **kwargs,
            )
        finally:
            self.signature_algorithm = b"rsa-sha256"


class _OpenSslRsa:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def sign(self, digest: bytes) -> SimpleNamespace:
        signature = self._key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        return SimpleNamespace(signature=signature)


def load_key(domain: str, selector: str, pem: bytes) -> SigningKey:
    """A signing key from a PEM private key (RSA of 1024 bits or more, or Ed25519)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as error:
        where = f"{selector}._domainkey.{domain}"
        raise InvalidKeys(f"{where}: not a usable private key ({error})") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < 1024:
            raise InvalidKeys(f"{selector}._domainkey.{domain}: RSA keys need 1024 bits or more")
        secret = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return SigningKey(domain.lower(), selector, "rsa-sha256", secret, key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return SigningKey(domain.lower(), selector, "ed25519-sha256", base64.b64encode(seed))
    raise InvalidKeys(f"{selector}._domainkey.{domain}: only RSA and Ed25519 keys can sign")


class Signer:
    """The DKIM keys of every domain we sign for."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self._keys: dict[str, list[SigningKey]] = {}
        for key in keys or []:
            self._keys.setdefault(key.domain, []).append(key)

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "Signer":
        """Keys listed in `path` (default `$POSTLINE_DKIM_KEYS`); none when neither is set."""
        path = path or os.environ.get(KEYS_ENV)
        if not path:
            return cls()
        try:
            table: Mapping[str, Any] = tomllib.loads(Path(path).read_text("utf-8"))
        except OSError as error:
            raise InvalidKeys(f"{path}: {error.strerror or error}") from None
        except tomllib.TOMLDecodeError as error:
            raise InvalidKeys(f"{path}: {error}") from None
        keys = []
        for index, entry in enumerate(table.get("key", []), 1):
            try:
                domain, selector = str(entry["domain"]), str(entry["selector"])
                pem = Path(entry["private_key"]).expanduser().read_bytes()
            except KeyError as error:
                raise InvalidKeys(f"{path}, key {index}: {error.args[0]!r} is missing") from None
            except OSError as error:
                raise InvalidKeys(f"{path}, key {index}: {error}") from None
            keys.append(load_key(domain, selector, pem))
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def with_keys(self, more: list[SigningKey]) -> "Signer":
        """These keys and `more` (a domain listed in both signs with both)."""
        return Signer([key for keys in self._keys.values() for key in keys] + more)

    def keys_for(self, domain: str) -> list[SigningKey]:
        """The keys of `domain`, or of its nearest parent that has any."""
        labels = domain.lower().rstrip(".").split(".")
        for start in range(len(labels) - 1):
            keys = self._keys.get(".".join(labels[start:]))
            if keys:
                return keys
        return []

    def sign(self, message: bytes, domain: str) -> bytes:
        """`message` with one signature per key of `domain` in front (unchanged if none)."""
        signatures = [key.sign(message) for key in self.keys_for(domain)]
        return b"".join(signatures) + message if signatures else message


def generate(algorithm: str = "rsa", bits: int = 2048) -> tuple[bytes, str]:
    """A new private key (PEM) and the DNS TXT value that publishes its public half."""
    key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    elif algorithm == "rsa":
        if bits < 1024:
            raise InvalidKeys("RSA keys need 1024 bits or more (2048 recommended)")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        raise InvalidKeys(f"unknown algorithm {algorithm!r}: use rsa or ed25519")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, f"v=DKIM1; k={algorithm}; p={base64.b64encode(public).decode()}"
