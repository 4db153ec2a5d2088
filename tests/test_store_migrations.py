"""Schema migrations: a database made by the previous schema upgrades in place, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import inspect, select, text

from batchd.store import db as dbmod
from batchd.store.schema import metadata, schema_version
from conftest import TEST_STORE


def _url(tmp_path) -> str:
    if TEST_STORE == "postgresql":
        from pgtest import fresh_database

        return fresh_database()
    return f"sqlite:///{tmp_path / 'm.sqlite3'}"


def _make_v1(url: str) -> None:
    """A version-1 database: today's tables without what versions 2+ added, with data in it."""
    d = dbmod.Database(url)
    with d.tx() as c:
        metadata.create_all(c)
        c.exec_driver_sql("DROP INDEX ix_jobs_account_region_seq")
        c.exec_driver_sql("DROP INDEX ix_jobs_pending_parents")
        c.exec_driver_sql("DROP TABLE servers")
        c.exec_driver_sql("DROP TABLE leases")
        c.exec_driver_sql("ALTER TABLE jobs DROP COLUMN detail")
        c.execute(schema_version.insert().values(version=1))
        c.exec_driver_sql(
            "INSERT INTO resources (kind, account, region, name, arn, data) VALUES "
            "('job-queue', '123456789012', 'us-east-1', 'q', 'arn:aws:batch:us-east-1:123456789012:job-queue/q', '{}')"
        )
    d.close()


def _indexes(url: str) -> set[str]:
    d = dbmod.Database(url)
    names = {i["name"] for i in inspect(d.engine).get_indexes("jobs")}
    d.close()
    return names


def test_upgrade_from_version_1(tmp_path):
    url = _url(tmp_path)
    _make_v1(url)
    assert "ix_jobs_account_region_seq" not in _indexes(url)
    d = dbmod.Database(url)
    d.migrate()
    assert d.conn.execute(select(schema_version.c.version)).scalar() == dbmod.SCHEMA_VERSION
    assert d.conn.execute(text("SELECT name FROM resources")).scalar() == "q"  # data kept
    tables = set(inspect(d.engine).get_table_names())
    d.close()
    assert {"ix_jobs_account_region_seq", "ix_jobs_pending_parents"} <= _indexes(url)
    assert {"servers", "leases"} <= tables
    d = dbmod.Database(url)
    assert "detail" in {c["name"] for c in inspect(d.engine).get_columns("jobs")}
    d.close()


def test_upgraded_schema_matches_a_fresh_one(tmp_path):
    upgraded = _url(tmp_path)
    _make_v1(upgraded)
    d = dbmod.Database(upgraded)
    d.migrate()
    d.close()
    fresh = _url(tmp_path / "fresh") if TEST_STORE == "postgresql" else f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    f = dbmod.Database(fresh)
    f.migrate()
    f.close()
    for table in metadata.tables:
        assert _table_shape(upgraded, table) == _table_shape(fresh, table), table


def _table_shape(url: str, table: str) -> tuple:
    d = dbmod.Database(url)
    insp = inspect(d.engine)
    shape = (
        sorted((c["name"], str(c["type"])) for c in insp.get_columns(table)),
        sorted(i["name"] for i in insp.get_indexes(table)),
    )
    d.close()
    return shape


def test_newer_database_is_refused(tmp_path):
    url = _url(tmp_path)
    d = dbmod.Database(url)
    d.migrate()
    with d.tx() as c:
        c.execute(schema_version.update().values(version=dbmod.SCHEMA_VERSION + 1))
    d.close()
    d = dbmod.Database(url)
    try:
        d.migrate()
    except dbmod.StoreError as exc:
        assert "newer than this batchd" in str(exc)
    else:
        raise AssertionError("a newer schema must be refused")
    finally:
        d.close()
