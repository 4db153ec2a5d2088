"""One database connection, its pragmas, transactions and schema migrations.

The server is one asyncio process: all statements run on the event loop's thread over one connection, and a
transaction never spans an `await`, so each transaction is atomic with respect to every other request.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
from sqlalchemy import create_engine, event, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from batchd.store.schema import metadata, schema_version

SCHEMA_VERSION = 1


class StoreError(Exception):
    """The state store cannot be used; the message says why."""


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(
            url, json_serializer=_json_dumps, json_deserializer=orjson.loads, future=True
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.conn: Connection = self.engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot open the database {_safe_url(url)}: {exc.orig}") from exc

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; commits on exit, rolls back on error."""
        if self.conn.in_transaction():
            # Reads outside tx() autobegin a transaction; end it so this one starts fresh.
            self.conn.commit()
        with self.conn.begin():
            yield self.conn

    def migrate(self) -> None:
        try:
            with self.tx() as c:
                metadata.create_all(c, tables=[schema_version])
                current = c.execute(select(schema_version.c.version)).scalar()
                if current is None:
                    metadata.create_all(c)
                    c.execute(insert(schema_version).values(version=SCHEMA_VERSION))
                elif current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database schema is version {current}, newer than this batchd ({SCHEMA_VERSION})"
                    )
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot use the database {_safe_url(self.url)}: {exc.orig}") from exc

    def close(self) -> None:
        self.conn.close()
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    cur = dbapi_conn.cursor()
    # WAL: readers never block the writer. synchronous=NORMAL: a commit survives a crash of this process
    # (kill -9); FULL would also survive power loss at an fsync per commit. See docs/durability.md.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _safe_url(url: str) -> str:
    # Never print a password that is part of the URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
