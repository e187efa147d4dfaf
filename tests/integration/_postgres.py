"""The PostgreSQL server of the integration tests, and a fresh schema per use.

The server is ``HYOK_TEST_POSTGRES_URL`` when set, and otherwise database
``test`` on 127.0.0.1:5432 with trust authentication, as user ``postgres``
or, when that connection fails, ``root``. When no server accepts a
connection, a test that needs one fails, unless ``HYOK_TEST_SKIP_POSTGRES=1``
makes it skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
import pytest
from sqlalchemy import make_url

__all__ = ["RUN_ID", "PostgresServer", "find_postgres", "fresh_schema", "require_postgres"]

RUN_ID = uuid.uuid4().hex[:8]


@dataclass
class PostgresServer:
    """The reachable PostgreSQL server, or the reason none is."""

    url: str | None
    problem: str = ""
    schemas: list[str] = field(default_factory=list)


def find_postgres() -> PostgresServer:
    configured = os.environ.get("HYOK_TEST_POSTGRES_URL")
    candidates = (
        [configured]
        if configured
        else [f"postgresql://{user}@127.0.0.1:5432/test" for user in ("postgres", "root")]
    )
    problems = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=5) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error as exc:
            shown = make_url(url).render_as_string(hide_password=True)
            problems.append(f"{shown}: {str(exc).strip()}")
            continue
        return PostgresServer(url)
    return PostgresServer(None, "; ".join(problems))


def require_postgres(server: PostgresServer) -> str:
    """Return the server URL, or fail (skip with HYOK_TEST_SKIP_POSTGRES=1) without one."""
    if server.url is not None:
        return server.url
    message = (
        "PostgreSQL is not reachable for the KMS tests ("
        + server.problem
        + "). Start PostgreSQL on 127.0.0.1:5432 with a database 'test', set "
        "HYOK_TEST_POSTGRES_URL, or set HYOK_TEST_SKIP_POSTGRES=1 to skip these tests."
    )
    if os.environ.get("HYOK_TEST_SKIP_POSTGRES") == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


@contextmanager
def fresh_schema(server: PostgresServer) -> Iterator[tuple[str, str]]:
    """Create an empty schema, yield (server URL, schema name), and drop it afterwards."""
    url = require_postgres(server)
    schema = f"hyok_test_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    server.schemas.append(schema)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield url, schema
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        server.schemas.remove(schema)
