"""`postline replay` as a user runs it: every read model or the ones named, and bad names."""

import asyncio
import json
from pathlib import Path

import msgspec

from domain.submission import Draft
from engine.accept import Origin
from engine.accounts import Principal, account_admin
from engine.runtime import Runtime
from engine.settings import store_url
from projections.email_logs import get_message
from tests.support.process import postline


def test_replay_one_read_model_or_refuse_an_unknown_name(database_url: str, tmp_path: Path) -> None:
    env = {"POSTLINE_DATABASE_URL": database_url}
    folder = ["--data-dir", str(tmp_path)]
    postline("bootstrap", "--json", *folder, env=env)
    runtime = Runtime(store_url(database_url, tmp_path), data_dir=tmp_path, sender_policy="any")
    runtime.start()
    try:
        origin = Origin(Principal(1, 1, "t", account_admin(1)), "transactional", "api", None)
        draft = {"from": {"email": "a@example.org"}, "to": [{"email": "b@example.com"}]}
        draft |= {"subject": "Hi", "text": "x"}
        sent = asyncio.run(runtime.acceptor.send(origin, msgspec.convert(draft, Draft)))
        runtime.email_logs.catch_up()
    finally:
        runtime.close()

    shown = postline("replay", "--read-model", "email_logs", *folder, env=env)
    assert "email_logs: [" in shown.stderr
    assert "100.0%" in shown.stderr
    assert "email_logs: rebuilt from 1 events" in shown.stderr
    assert "delivery_queue" not in shown.stderr

    both = ["--read-model", "email_logs", "--read-model", "api_tokens"]
    summary = json.loads(postline("replay", *both, "--json", *folder, env=env).stdout)
    assert summary["projections"] == {"email_logs": 1, "api_tokens": 1}  # the bootstrap token
    assert summary["seconds"] >= 0

    refused = postline("replay", "--read-model", "email_log", *folder, env=env, check=False)
    assert refused.returncode == 2
    assert "no read model 'email_log'" in refused.stderr
    assert "email_logs, delivery_queue" in refused.stderr  # the names there are
    assert refused.stdout == ""

    runtime = Runtime(store_url(database_url, tmp_path), data_dir=tmp_path)
    try:  # the rebuilt read model answers, from where the replay left it
        assert runtime.email_logs.position() == summary["log_position"]
        found = get_message(runtime.store.db, 1, sent[0])
        assert found is not None
        assert found["subject"] == "Hi"
    finally:
        runtime.close()
