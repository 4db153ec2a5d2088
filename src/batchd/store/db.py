"""One database connection, its pragmas, transactions and schema migrations.

The server is one asyncio process: all statements run on the event loop's thread over one connection, and a
transaction never spans an `await`, so each transaction is atomic with respect to every other request. (With
PostgreSQL the scheduler's cluster also holds a LISTEN connection for wake-ups, scheduler/cluster.py; the Logs
handlers read files on a thread pool, but no statement runs there.)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
from sqlalchemy import create_engine, event, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError

from batchd.store.schema import metadata, schema_version

SCHEMA_VERSION = 5


def _v2_recent_jobs_index(conn: Connection) -> None:
    conn.exec_driver_sql(
        "CREATE INDEX IF NOT EXISTS ix_jobs_account_region_seq ON jobs (account, region, seq)"
    )


def _v3_servers_and_leases(conn: Connection) -> None:
    from batchd.store.schema import leases, servers

    metadata.create_all(conn, tables=[servers, leases])


def _v4_stored_job_detail(conn: Connection) -> None:
    # Existing rows keep NULL: DescribeJobs renders those from the row (no rewrite of a large table here).
    conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN detail TEXT")


def _v5_pending_parents_index(conn: Connection) -> None:
    from batchd.store.schema import PENDING_PARENTS_WHERE

    conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_jobs_pending_parents ON jobs (seq) WHERE {PENDING_PARENTS_WHERE}")


# version -> the step that upgrades a database from version-1 to version. A new database gets the whole
# current schema at once; an existing one gets every step it has not had, in order, in one transaction.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_recent_jobs_index,
    3: _v3_servers_and_leases,
    4: _v4_stored_job_detail,
    5: _v5_pending_parents_index,
}


class StoreError(Exception):
    """The state store cannot be used; the message says why."""


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


# What the store is written and tested for: SQLite (the default) and PostgreSQL through psycopg 3.
SUPPORTED_DATABASES = (
    "sqlite:///PATH (the default, in the data dir) or postgresql+psycopg://USER@HOST:PORT/DB "
    "(with pip install -e \".[postgres]\")"
)
_DRIVERS = {("sqlite", "pysqlite"), ("postgresql", "psycopg")}


def supported_url(url: str) -> str:
    """The URL as SQLAlchemy should get it, or a StoreError of one line saying what is supported: an unknown
    database, a driver batchd does not use, or one that is not installed (instead of SQLAlchemy's traceback).
    `postgresql://` means psycopg 3 here (SQLAlchemy's default for it is psycopg2, which batchd does not use)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"{_safe_url(url)} is not a database URL; batchd supports {SUPPORTED_DATABASES}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    try:
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    except NoSuchModuleError:
        backend, driver = parsed.drivername, ""
    if (backend, driver) not in _DRIVERS:
        raise StoreError(f"database {parsed.drivername}:// is not supported; batchd supports {SUPPORTED_DATABASES}")
    if driver == "psycopg":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise StoreError(
                'the PostgreSQL driver psycopg is not installed: pip install -e ".[postgres]" '
                '(or pip install "psycopg[binary]")'
            ) from None
    return parsed.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str) -> None:
        url = supported_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, object] = {}
        if self.is_sqlite:
            path = url.split("///", 1)[1]
            if path and path != ":memory:":
                _prepare_dir(Path(path).parent)
        else:
            connect_args["connect_timeout"] = 5
        self.engine: Engine = create_engine(
            url, json_serializer=_json_dumps, json_deserializer=orjson.loads, connect_args=connect_args,
            pool_pre_ping=not self.is_sqlite,
        )
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.conn: Connection = self.engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot open the database {_safe_url(url)}: {_explain(exc)}") from exc

    @contextlib.contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction; commits on exit, rolls back on error."""
        if self.conn.in_transaction():
            # Reads outside tx() autobegin a transaction; end it so this one starts fresh.
            self.conn.commit()
        # Marks the transaction as a writer's: reads inside it see its own uncommitted rows, so they must not
        # fill the record cache (store/jobs.py).
        self.conn.info["batchd_writing"] = True
        try:
            with self.conn.begin():
                yield self.conn
        finally:
            self.conn.info["batchd_writing"] = False

    def migrate(self) -> None:
        try:
            with self.tx() as c:
                metadata.create_all(c, tables=[schema_version])
                current = c.execute(select(schema_version.c.version)).scalar()
                if current is None:
                    metadata.create_all(c)
                    c.execute(insert(schema_version).values(version=SCHEMA_VERSION))
                elif current < SCHEMA_VERSION:
                    for version in range(current + 1, SCHEMA_VERSION + 1):
                        MIGRATIONS[version](c)
                    c.execute(update(schema_version).values(version=SCHEMA_VERSION))
                elif current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the database schema is version {current}, newer than this batchd ({SCHEMA_VERSION})"
                    )
        except (OperationalError, DBAPIError) as exc:
            raise StoreError(f"cannot use the database {_safe_url(self.url)}: {_explain(exc)}") from exc

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
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _prepare_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"data dir {path} cannot be created: {exc.strerror}") from exc
    if not path.is_dir():
        raise StoreError(f"data dir {path} is not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise StoreError(f"data dir {path} is not readable and writable by this user")


def _explain(exc: DBAPIError) -> str:
    text = str(exc.orig).strip()
    if "database is locked" in text:
        return text + " (another process holds a lock on it; is another batchd or a sqlite3 shell using it?)"
    if "not a database" in text or "malformed" in text:
        return text + " (the file is corrupt or not a batchd database; restore it from a backup or move it away)"
    return text


def _safe_url(url: str) -> str:
    # Never print a password that is part of the URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
