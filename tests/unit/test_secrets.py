"""Sealing secrets with the installation's key (adapters.secrets)."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.secrets import SECRET_KEY_ENV, SecretError, secret_box


def test_a_key_file_is_made_once_and_kept_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    sealed = secret_box(tmp_path).seal(b"private key")
    assert b"private key" not in sealed.encode()
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert secret_box(tmp_path).open(sealed) == b"private key"  # the same key, read back


def test_the_environment_wins_and_a_different_key_cannot_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_KEY_ENV, raising=False)
    sealed = secret_box(tmp_path).seal(b"x")
    monkeypatch.setenv(SECRET_KEY_ENV, Fernet.generate_key().decode())
    with pytest.raises(SecretError, match="does not open"):
        secret_box(tmp_path).open(sealed)
    monkeypatch.setenv(SECRET_KEY_ENV, "not-a-key")
    with pytest.raises(SecretError, match="not a Fernet key"):
        secret_box(tmp_path)
