"""First-run set-up: an account and an API token, remembered in the data folder."""

import json
import os
from pathlib import Path

from domain.ids import sequence_id
from engine.accounts import Authenticator, account_exists, issue_token, open_account
from engine.store import EventStore

CREDENTIALS_FILE = "credentials.json"


def bootstrap(store: EventStore, data_dir: Path) -> dict[str, int | str]:
    """Make sure an account and a working token exist; idempotent.

    The token's secret is stored only as a digest in the event store; to print it again on
    every `make run`, the bootstrap token is also kept in `<data_dir>/credentials.json`, readable
    by its owner only. Delete that file to have a fresh bootstrap token issued.
    """
    path = data_dir / CREDENTIALS_FILE
    saved = _read(path)
    if saved is not None and Authenticator(store).authenticate(str(saved["api_token"])):
        return saved
    sequence = store.get(sequence_id("account"))
    if sequence is not None and sequence.last >= 1 and account_exists(store, 1):
        account_id = 1
    else:
        account_id = open_account(store, "Default account")
    issued = issue_token(store, account_id, "bootstrap", created_by="postline bootstrap")
    credentials: dict[str, int | str] = {
        "account_id": account_id,
        "api_token": issued.token,
        "token_id": issued.token_id,
    }
    _write(path, credentials)
    return credentials


def _read(path: Path) -> dict[str, int | str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and {"account_id", "api_token"} <= data.keys():
        return data
    return None


def _write(path: Path, credentials: dict[str, int | str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(credentials, f, indent=2)
        f.write("\n")
