"""Secrets Postline must keep but cannot hash (DKIM private keys), sealed with Fernet.

The sealing key is `POSTLINE_SECRET_KEY` (a Fernet key: 32 url-safe base64 bytes) or, when it
is not set, `secret.key` in the data folder, created on first use with mode 0600. Every process
of an installation needs the same key: on several hosts, set the variable.
"""

import hashlib
import hmac
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

SECRET_KEY_ENV = "POSTLINE_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
SECRET_KEY_FILE = "secret.key"  # noqa: S105 - a file name


class SecretError(ValueError):
    """A sealing key that cannot be used, or a sealed value it cannot open."""


class SecretBox:
    """Seal and open small secrets."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        try:
            self._fernet = Fernet(key)
        except ValueError as error:
            raise SecretError(f"{SECRET_KEY_ENV} is not a Fernet key: {error}") from None

    def derive(self, purpose: str) -> bytes:
        """A key for one purpose (signing links, say), derived from the installation's key."""
        return hmac.new(self._key, purpose.encode("utf-8"), hashlib.sha256).digest()

    def seal(self, secret: bytes) -> str:
        return self._fernet.encrypt(secret).decode("ascii")

    def open(self, sealed: str) -> bytes:
        try:
            return self._fernet.decrypt(sealed.encode("ascii"))
        except InvalidToken:
            raise SecretError(
                "a sealed secret does not open with this installation's key "
                f"({SECRET_KEY_ENV} or {SECRET_KEY_FILE} differs from the one that sealed it)"
            ) from None


def secret_box(data_dir: Path) -> SecretBox:
    """The installation's box: from the environment, else the data folder's key file."""
    configured = os.environ.get(SECRET_KEY_ENV)
    if configured:
        return SecretBox(configured.encode("ascii"))
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor, name = tempfile.mkstemp(prefix=f".{SECRET_KEY_FILE}.", dir=data_dir)
        draft = Path(name)  # mkstemp: mode 0600, a name no other process has
        with os.fdopen(descriptor, "wb") as file:
            file.write(Fernet.generate_key())
        try:
            os.link(draft, path)  # appears whole, or not at all if another process won
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return SecretBox(path.read_bytes().strip())
