"""A PostgreSQL database of its own for one measurement or test: created with a unique name, dropped at the end.

The server is named by `LEAF_PG_ADMIN_URL` (default: the local server, user postgres, its `postgres` database),
a libpq URL of a role allowed to create databases. The Dagster instance then gets `DAGSTER_PG_URL` pointing at the
new database (with the psycopg2 driver named, as leaf_dagster.instance requires), so runs, events and schedules of
one measurement never meet another's.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from leaf_dagster.instance import PG_URL_SCHEME

ADMIN_URL_ENV = "LEAF_PG_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL


def _connect(url: str) -> Any:
    import psycopg2  # type: ignore[import-untyped]  # dagster-postgres's driver

    connection = psycopg2.connect(url, connect_timeout=5)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return connection


def reachable(url: str | None = None) -> str | None:
    """None when the server answers, else why not (one line)."""
    try:
        _connect(url or admin_url()).close()
    except Exception as exc:  # psycopg2.OperationalError and friends: the reason is what matters
        return f"PostgreSQL at {_without_password(url or admin_url())} unreachable: {str(exc).strip().splitlines()[0]}"
    return None


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    user = f"{parts.username}@" if parts.username else ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, "", ""))


@contextmanager
def scratch_database(prefix: str = "leaf") -> Iterator[str]:
    """Create a database with a unique name on the admin URL's server; yield its URL; drop it (closing whatever
    connections are left, e.g. of a daemon killed meanwhile)."""
    base = admin_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    connection = _connect(base)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(base)
        try:
            yield urlunsplit((PG_URL_SCHEME, parts.netloc, f"/{name}", parts.query, ""))
        finally:
            drop_database(name, connection)
    finally:
        connection.close()


def drop_database(name: str, connection: Any = None) -> None:
    """Drop the database `name` of the admin URL's server, closing whatever connections are left."""
    own = connection is None
    connection = _connect(admin_url()) if own else connection
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if own:
            connection.close()
