"""The catalog: where the Iceberg tables are registered, and how people query them.

`CatalogResource.iceberg()` returns a pyiceberg catalog. Locally (`DuckDBCatalog`, the embedded
default) that is pyiceberg's SQL catalog on a SQLite file, and a DuckDB file exposes the current
snapshot of every table as a view for people and `data-platform query`. On AWS (`GlueCatalog`) the
tables are registered in the Glue Data Catalog and Athena reads them natively.

The DuckDB file is never written in place: DuckDB lets one process write a file and a reader
holding it open read-only blocks writers. Under an exclusive file lock the platform copies it,
changes the copy and renames it over the original, so readers (a person's `duckdb -readonly`
session) keep the file they opened and are never blocked. Views are rebuilt from the tables'
current snapshots while holding the lock, so a slower run can never put back an older snapshot.
The copy is attached to this process's in-memory DuckDB database for it (duckdb_pool): ~5 ms per
change, where opening the copy as a database of its own cost ~20 ms.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field
from pyiceberg.catalog import Catalog

from .. import duckdb_pool
from ..settings import data_dir, local_path, setting
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from .athena import QueryResult


class CatalogResource(dg.ConfigurableResource, abc.ABC):
    """An Iceberg catalog plus a way to query its tables."""

    namespace: str = Field(default="platform", description="Iceberg namespace of the tables")

    @abc.abstractmethod
    def iceberg(self) -> Catalog:
        """A pyiceberg catalog (this process's client: see each catalog)."""

    def expose(self, names: Sequence[str]) -> None:
        """Make the current snapshots of tables `names` visible to readers (no-op on AWS)."""

    def expose_database(self) -> str | None:
        """The duckdb_pool database `expose` changes the views in (None: it uses none), made
        ahead by a run while its file is cleaned."""
        return None

    @abc.abstractmethod
    def query(self, sql: str) -> list[tuple]:
        """Run a read-only query and return all rows."""

    def execute(self, sql: str) -> QueryResult | None:
        """Run a statement for its effect (compaction SQL); returns the engine's result with its
        statistics where the engine bills by data scanned (Athena), else None."""
        self.query(sql)
        return None

    def compaction_sql(self, name: str) -> list[str]:
        """Statements that compact table `name` in the query engine ([]: the platform compacts
        it itself)."""
        return []

    def row_count(self, name: str) -> int:
        """Rows of table `name`, counted by the query engine: a full-table query, for people
        and benchmarks. Runs and checks never call it: they count from Iceberg metadata."""
        return int(self.query(f"SELECT count(*) FROM {_q(name)}")[0][0])


duckdb_pool.register("views")  # where the copy of the views' file is changed (see the module)


class DuckDBCatalog(CatalogResource):
    """Iceberg tables in a SQLite catalog; a DuckDB file of views for people (embedded default)."""

    path: str | None = Field(
        default=None,
        description="DuckDB file of views; default $PLATFORM_DUCKDB_PATH or <data dir>/catalog.duckdb",
    )
    iceberg_uri: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the Iceberg catalog; default $PLATFORM_ICEBERG_CATALOG_URI "
                    "or a SQLite file <data dir>/iceberg.db",
    )

    def expose_database(self) -> str | None:
        return "views"

    def db_path(self) -> Path:
        return local_path(setting(self.path, "PLATFORM_DUCKDB_PATH", "catalog.duckdb"))

    def iceberg(self) -> Catalog:
        from ..tables.sql_catalog import sql_catalog

        uri = self.iceberg_uri or os.environ.get("PLATFORM_ICEBERG_CATALOG_URI")
        if not uri:
            data_dir().mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{data_dir() / 'iceberg.db'}"
        return sql_catalog(uri)  # this process's, made once (see tables/sql_catalog.py)

    @contextlib.contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        db = self.db_path()
        db.parent.mkdir(parents=True, exist_ok=True)
        with open(db.with_name(db.name + ".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            fd, tmp = tempfile.mkstemp(prefix=".catalog-", suffix=".duckdb", dir=db.parent)
            os.close(fd)
            os.unlink(tmp)
            try:
                if db.exists():
                    shutil.copyfile(db, tmp)
                con = duckdb_pool.connect("views")
                alias = f"views_{uuid.uuid4().hex}"
                try:
                    con.execute(f"ATTACH {_lit(tmp)} AS {alias}")
                    try:
                        con.execute(f"USE {alias}")
                        yield con
                        con.execute(f"CHECKPOINT {alias}")
                    finally:
                        con.execute("USE memory")
                        con.execute(f"DETACH {alias}")
                finally:
                    con.close()
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, db)
            finally:
                for leftover in (tmp, tmp + ".wal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)

    def expose(self, names: Sequence[str]) -> None:
        from ..tables.store import load_table
        from ..tables.views import view_sql

        with self._writer() as con:
            catalog = self.iceberg()
            con.execute("CREATE TABLE IF NOT EXISTS _snapshots (name VARCHAR PRIMARY KEY, "
                        "snapshot_id BIGINT, exposed_at TIMESTAMPTZ)")
            for name in names:
                table = load_table(catalog, self.namespace, name)  # newest, under the lock
                if table is None:
                    continue
                con.execute(view_sql(name, table))
                snap = table.current_snapshot()
                con.execute("INSERT OR REPLACE INTO _snapshots VALUES (?, ?, now())",
                            [name, snap.snapshot_id if snap else None])

    def query(self, sql: str) -> list[tuple]:
        db = self.db_path()
        if not db.exists():
            raise FileNotFoundError(f"catalog {db} does not exist yet: no table was registered")
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
