"""The PostgreSQL server the suite runs against, and throwaway schemas in it."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ENV = "POSTLINE_TEST_POSTGRES_URL"


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


def explicitly_configured() -> bool:
    return bool(os.environ.get(ENV))


def reachable(url: str) -> str | None:
    """None when the server answers, else why not."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip()
    return None


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new empty schema, dropped afterwards; yields a Postline URL that uses it."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}schema={name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
