"""This process's Iceberg SQL catalogs (data_platform.tables.sql_catalog): one per database and
process, on a SQLite file with a write-ahead log, made anew when the file is replaced."""

import multiprocessing
import os
import shutil
import sqlite3

import pytest
from data_platform.tables import sql_catalog as sc
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField

SCHEMA = Schema(NestedField(1, "a", LongType(), required=False))


def _create(catalog, tmp_path, name: str) -> None:
    catalog.create_table(("ns", name), schema=SCHEMA, location=str(tmp_path / "wh" / name))


def test_a_reader_holding_a_snapshot_never_blocks_a_commit(tmp_path):
    """A reader in a read transaction (a person's sqlite3 shell, a statement another connection
    left open): with SQLite's rollback journal every commit waits for it until the busy timeout
    (5 s) and fails with "database is locked". The catalog's file has a write-ahead log: the
    commit lands while the reader still sees the snapshot it began with."""
    db = tmp_path / "iceberg.db"
    catalog = sc.sql_catalog(f"sqlite:///{db}")
    catalog.create_namespace("ns")
    reader = sqlite3.connect(db, isolation_level=None, timeout=0.5)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM iceberg_tables").fetchone() == (0,)
        _create(catalog, tmp_path, "t")  # raised "database is locked" in the rollback journal
        _create(catalog, tmp_path, "u")
        assert reader.execute("SELECT count(*) FROM iceberg_tables").fetchone() == (0,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM iceberg_tables").fetchone() == (2,)
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        reader.close()
    assert sorted(catalog.list_tables("ns")) == [("ns", "t"), ("ns", "u")]


def test_a_file_switched_from_the_rollback_journal_keeps_its_tables(tmp_path):
    """A catalog made before the write-ahead log (a `.data/` of an earlier version) is switched
    when this version first opens it, with its tables."""
    db = tmp_path / "iceberg.db"
    old = sc._open("platform", f"sqlite:///{db}")  # noqa: SLF001 - as an earlier version made it
    old.create_namespace("ns")
    _create(old, tmp_path, "t")
    old.engine.dispose()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("delete",)
    catalog = sc.sql_catalog(f"sqlite:///{db}")
    assert catalog.list_tables("ns") == [("ns", "t")]
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_one_catalog_per_database_until_its_file_is_replaced(tmp_path):
    """The same catalog for the same database; a file deleted or replaced under a running process
    (`rm -rf .data`) gets a new catalog on the new file, never the old file's connections."""
    db = tmp_path / "data" / "iceberg.db"
    uri = f"sqlite:///{db}"
    first = sc.sql_catalog(uri)
    assert sc.sql_catalog(uri) is first
    first.create_namespace("ns")
    _create(first, tmp_path, "old")
    shutil.rmtree(tmp_path / "data")
    second = sc.sql_catalog(uri)
    assert second is not first and db.exists()
    assert second.list_namespaces() == []
    second.create_namespace("ns")
    assert [t for t in second.list_tables("ns")] == []
    assert sc.sql_catalog(f"sqlite:///{tmp_path / 'other.db'}") is not second


def _child(uri, parent_engine_id, out):
    catalog = sc.sql_catalog(uri)
    out.put((id(catalog.engine) != parent_engine_id, catalog.list_namespaces()))


def test_a_forked_process_makes_its_own_catalog(tmp_path):
    """A child forked after its parent opened the catalog never uses the parent's connections."""
    uri = f"sqlite:///{tmp_path / 'iceberg.db'}"
    parent = sc.sql_catalog(uri)
    parent.create_namespace("ns")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child, args=(uri, id(parent.engine), out))
    child.start()
    child.join(60)
    assert child.exitcode == 0 and out.get(timeout=5) == (True, [("ns",)])
    assert sc.sql_catalog(uri) is parent


def test_catalogs_beyond_the_limit_are_closed_oldest_first(tmp_path, monkeypatch):
    monkeypatch.setattr(sc, "MAX_CATALOGS", 2)
    made = [sc.sql_catalog(f"sqlite:///{tmp_path / f'{i}.db'}") for i in range(3)]
    assert sc.sql_catalog(f"sqlite:///{tmp_path / '2.db'}") is made[2]
    assert sc.sql_catalog(f"sqlite:///{tmp_path / '0.db'}") is not made[0]
    sc.forget_all()
    assert not [k for k in sc._CATALOGS if k[0] == os.getpid()]  # noqa: SLF001


@pytest.mark.parametrize("uri,path", [
    ("sqlite:////srv/x/iceberg.db", "/srv/x/iceberg.db"),
    ("sqlite:///rel/iceberg%20db.db?timeout=3", "rel/iceberg db.db"),
    ("sqlite:///:memory:", None),
    ("postgresql+psycopg2://u@h/db", None),
])
def test_sqlite_file_of_a_uri(uri, path):
    assert sc.sqlite_file(uri) == path
