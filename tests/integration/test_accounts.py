"""Accounts, tokens and authentication against both stores."""

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from domain.accounts import ApiToken, token_digest
from domain.ids import entity_id
from engine.accounts import Authenticator, UnknownAccount, issue_token, open_account
from engine.bootstrap import bootstrap
from engine.runtime import Runtime
from engine.store import EventStore


def test_account_ids_are_sequential_and_map_to_fixed_aggregate_ids(runtime: Runtime) -> None:
    ids = [open_account(runtime.store, f"a{i}") for i in range(3)]
    assert ids == [1, 2, 3]
    assert runtime.store.get(entity_id("account", 2)).name == "a1"


def test_concurrent_allocation_never_hands_out_an_id_twice(runtime: Runtime) -> None:
    second = EventStore(runtime.store.url)  # another writer on the same database
    results: list[int] = []

    def open_many(store: EventStore) -> None:
        results.extend(open_account(store, "x") for _ in range(10))

    threads = [threading.Thread(target=open_many, args=(s,)) for s in (runtime.store, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.close()
    assert sorted(results) == list(range(1, 21))


def test_tokens_are_stored_as_digests_and_authenticate(runtime: Runtime) -> None:
    account_id = open_account(runtime.store, "acme")
    issued = issue_token(runtime.store, account_id, "ci", created_by="tests")
    assert len(issued.token) == 32
    token = runtime.store.get(entity_id("api_token", issued.token_id))
    assert isinstance(token, ApiToken)
    assert token.digest == token_digest(issued.token)
    assert token.last_4_digits == issued.token[-4:]
    assert issued.token not in json.dumps(vars(token), default=str)
    principal = Authenticator(runtime.store).authenticate(issued.token)
    assert principal is not None
    assert (principal.account_id, principal.token_id) == (account_id, issued.token_id)


def test_unknown_and_revoked_tokens_are_refused(runtime: Runtime) -> None:
    account_id = open_account(runtime.store, "acme")
    issued = issue_token(runtime.store, account_id, "ci", created_by="tests")
    auth = Authenticator(runtime.store, ttl=0)
    assert auth.authenticate("0" * 32) is None
    token = runtime.store.get(entity_id("api_token", issued.token_id))
    token.revoke(by="tests")
    runtime.store.save(token)
    assert auth.authenticate(issued.token) is None


def test_tokens_need_an_existing_account(runtime: Runtime) -> None:
    with pytest.raises(UnknownAccount):
        issue_token(runtime.store, 99, "x", created_by="tests")


def test_bootstrap_is_idempotent_and_keeps_the_secret_private(
    runtime: Runtime, tmp_path: Path
) -> None:
    first = bootstrap(runtime.store, tmp_path)
    again = bootstrap(runtime.store, tmp_path)
    assert first == again
    path = tmp_path / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.unlink()
    third = bootstrap(runtime.store, tmp_path)
    assert third["account_id"] == first["account_id"]
    assert third["api_token"] != first["api_token"]
    assert Authenticator(runtime.store).authenticate(str(third["api_token"])) is not None
