"""Fixtures shared by the whole suite.

Store-dependent tests run twice: on SQLite and on PostgreSQL. The PostgreSQL server is
`$POSTLINE_TEST_POSTGRES_URL` (default postgresql://postgres@127.0.0.1:5432/postgres). When that
variable is set, an unreachable server stops the run with an error; when it is not set and the
default server does not answer, the PostgreSQL half is skipped with the reason shown.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.accounts import issue_token, open_account
from engine.runtime import Runtime
from engine.settings import store_url as resolve_store
from tests.support.live import LiveServer
from tests.support.postgres import explicitly_configured, fresh_schema, reachable, server_url

_pg_problem: str | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _pg_problem
    _pg_problem = reachable(server_url())
    if _pg_problem is not None and explicitly_configured():
        raise pytest.UsageError(
            f"POSTLINE_TEST_POSTGRES_URL={server_url()} is set but unreachable: {_pg_problem}"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if _pg_problem is None:
        return
    skip = pytest.mark.skip(
        reason=f"PostgreSQL at {server_url()} is unreachable ({_pg_problem}); "
        "set POSTLINE_TEST_POSTGRES_URL to make this an error"
    )
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store: an SQLite file or a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'postline.db'}"
    else:
        with fresh_schema(server_url()) as url:
            yield url


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    # Senders from any domain: most tests are about other things; the sender policy's own
    # tests turn it on (`runtime.senders.policy = "verified"`).
    rt = Runtime(resolve_store(database_url, tmp_path), data_dir=tmp_path, sender_policy="any")
    rt.start()
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def account(runtime: Runtime) -> tuple[int, str]:
    """A new account and an API token for it."""
    account_id = open_account(runtime.store, "Test account")
    return account_id, issue_token(runtime.store, account_id, "test", created_by="tests").token


@pytest.fixture
def live(runtime: Runtime) -> Iterator[LiveServer]:
    server = LiveServer(runtime)
    try:
        yield server
    finally:
        server.stop()
