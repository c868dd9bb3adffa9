"""A PostgreSQL database of a bench's own for one run: made, pointed at, and dropped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

SERVER = "postgresql://postgres@127.0.0.1:5432"


def admin(sql: str, *, server: str = SERVER) -> None:
    """One statement on ``server``'s maintenance database (outside any transaction)."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as connection:
        connection.execute(sql)


def recreate(url: str) -> None:
    """Drop the PostgreSQL database ``url`` names, if it exists, and create it empty."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = urlunsplit(parts._replace(path=""))
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', server=server)
    admin(f'CREATE DATABASE "{name}"', server=server)


@contextmanager
def throwaway_database() -> Iterator[str]:
    """Create a fresh database, point Django's settings at it (no Redis), yield its name,
    then close Django's connections and drop it."""
    name = f"mediaopt_bench_{uuid.uuid4().hex[:8]}"
    os.environ.pop("REDIS_URL", None)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "mediaopt.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
            "LOG_LEVEL": "WARNING",
        }
    )
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        from django.db import connections

        connections.close_all()
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
