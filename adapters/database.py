"""Store URLs and the eventsourcing environment they translate to.

`POSTLINE_DATABASE_URL` is either `sqlite:///relative/file.db` / `sqlite:////absolute/file.db`
(the embedded store) or `postgresql://user:password@host:port/dbname?schema=name`. The optional
`schema` parameter lets several installations share one PostgreSQL database.
"""

import fcntl
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from eventsourcing.persistence import OperationalError

DEFAULT_URL = "sqlite:///postline-data/postline.db"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class InvalidDatabaseUrl(ValueError):
    """The URL names no store Postline can use."""


@dataclass(frozen=True, slots=True)
class StoreUrl:
    dialect: str  # "sqlite" | "postgres"
    path: str = ""  # sqlite file
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    dbname: str = ""
    schema: str = "public"

    @property
    def display(self) -> str:
        """The URL without its password, for logs."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}?schema={self.schema}"
        )


def parse_url(url: str) -> StoreUrl:
    """Parse a store URL, or raise InvalidDatabaseUrl with a message that says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise InvalidDatabaseUrl(
                f"{url!r}: a SQLite URL has no host; use sqlite:///relative.db or "
                "sqlite:////absolute/path.db"
            )
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if not path:
            raise InvalidDatabaseUrl(f"{url!r}: the SQLite URL names no file")
        return StoreUrl(dialect="sqlite", path=path)
    if parts.scheme in ("postgresql", "postgres"):
        query = parse_qs(parts.query)
        schema = query.get("schema", ["public"])[0]
        if not _SCHEMA_NAME.fullmatch(schema):
            raise InvalidDatabaseUrl(f"{url!r}: schema {schema!r} is not a plain lower-case name")
        dbname = unquote(parts.path.lstrip("/")) or "postgres"
        return StoreUrl(
            dialect="postgres",
            host=unquote(parts.hostname or "127.0.0.1"),
            port=parts.port or 5432,
            user=unquote(parts.username or "postgres"),
            password=unquote(parts.password or ""),
            dbname=dbname,
            schema=schema,
        )
    raise InvalidDatabaseUrl(
        f"{url!r}: unsupported scheme {parts.scheme!r}; use sqlite:/// or postgresql://"
    )


def eventsourcing_env(
    store: StoreUrl, *, pool_size: int = 4, max_overflow: int = 8
) -> dict[str, str]:
    """The eventsourcing settings for the application that records into `store`."""
    common = {"TRANSCODER_TOPIC": "adapters.transcoder:MsgspecTranscoder"}
    if store.dialect == "sqlite":
        Path(store.path).parent.mkdir(parents=True, exist_ok=True)
        return {
            **common,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": store.path,
            "SQLITE_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": "adapters.eventstore:SQLiteEventStore",
        }
    return {
        **common,
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": store.dbname,
        "POSTGRES_HOST": store.host,
        "POSTGRES_PORT": str(store.port),
        "POSTGRES_USER": store.user,
        "POSTGRES_PASSWORD": store.password,
        "POSTGRES_SCHEMA": store.schema,
        # Fail fast when the server is gone: callers answer 503 / 451 rather than hang.
        "POSTGRES_CONNECT_TIMEOUT": "3",
        "POSTGRES_PRE_PING": "y",
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": str(max_overflow),
        "POSTGRES_MAX_WAITING": "256",
        "POSTGRES_LOCK_TIMEOUT": "10",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": "adapters.eventstore:PostgresEventStore",
    }


@contextmanager
def schema_lock(store: StoreUrl) -> Iterator[None]:
    """Serialise table creation between processes starting at the same time.

    PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe under concurrency (two sessions can
    both decide to create and one fails on a catalog unique index), so start-up takes a
    session-level advisory lock per schema. On SQLite, switching a new file to WAL mode fails
    with "database is locked" while another process opens it, so start-up holds an exclusive
    lock on a companion `.lock` file.
    """
    if store.dialect != "postgres":
        Path(store.path).parent.mkdir(parents=True, exist_ok=True)
        with open(f"{store.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return
    try:
        conn = psycopg.connect(
            host=store.host,
            port=store.port,
            user=store.user,
            password=store.password,
            dbname=store.dbname,
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        raise OperationalError(str(error)) from error
    with conn:
        # Released when the connection closes, even if start-up fails half-way.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (f"postline-schema:{store.schema}",))
        yield
