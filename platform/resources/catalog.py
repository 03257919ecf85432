"""The catalog: one SQL table (view) per dataset over its cleaned Parquet files.

Locally this is a DuckDB file. DuckDB lets one process write a database file and locks it, and a
reader holding the file open read-only blocks writers. So the platform never writes the
catalog in place: under an exclusive file lock (runs serialize on it for milliseconds) it copies
the file, changes the copy and renames it over the original. Readers, including a person's
`duckdb -readonly` session, keep whatever file they opened and are never blocked, and the views
read the Parquet files when queried, so even an old handle sees new data.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import duckdb
from pydantic import Field

from ..contracts import Column
from ..settings import local_path, setting
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit


class CatalogResource(dg.ConfigurableResource, abc.ABC):
    """Registers datasets as SQL tables and answers queries about them."""

    @abc.abstractmethod
    def register_table(
        self,
        name: str,
        columns: Sequence[Column],
        data_uri: str,
        *,
        has_data: bool,
        partition_column: str | None = None,
        rejected_uri: str | None = None,
        partition_values: Sequence[str] = (),
    ) -> str:
        """Create or replace table `name` over the Parquet files under `data_uri`.

        Returns a description of the definition (the SQL, locally). `partition_column` is
        stored as hive folders `<column>=<value>`; `partition_values` lists those present, for
        catalogs that register partitions explicitly.
        """

    @abc.abstractmethod
    def query(self, sql: str) -> list[tuple]:
        """Run a read-only query and return all rows."""

    def row_count(self, name: str) -> int:
        return int(self.query(f"SELECT count(*) FROM {_q(name)}")[0][0])


def view_sql(name: str, columns: Sequence[Column], data_uri: str, *, has_data: bool,
             partition_column: str | None) -> str:
    """Return the DuckDB `CREATE OR REPLACE VIEW` statement for a dataset."""
    cols = ", ".join(f"CAST({_q(c.name)} AS {c.sql_type}) AS {_q(c.name)}" for c in columns)
    if not has_data:
        nulls = ", ".join(f"CAST(NULL AS {c.sql_type}) AS {_q(c.name)}" for c in columns)
        return f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {nulls} WHERE false"
    glob = data_uri.rstrip("/") + "/**/*.parquet"
    hive = "false"
    if partition_column:
        pc = next(c for c in columns if c.name == partition_column)
        hive = f"true, hive_types={{{_lit(pc.name)}: {_lit(pc.sql_type)}}}"
    return (
        f"CREATE OR REPLACE VIEW {_q(name)} AS SELECT {cols} FROM read_parquet({_lit(glob)}, "
        f"union_by_name=true, hive_partitioning={hive})"
    )


class DuckDBCatalog(CatalogResource):
    """A DuckDB file with one view per dataset (the embedded default)."""

    path: str | None = Field(
        default=None, description="DuckDB file; default $PLATFORM_DUCKDB_PATH or <data dir>/catalog.duckdb"
    )

    def db_path(self) -> Path:
        return local_path(setting(self.path, "PLATFORM_DUCKDB_PATH", "catalog.duckdb"))

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
                con = duckdb.connect(tmp)
                try:
                    yield con
                    con.execute("CHECKPOINT")
                finally:
                    con.close()
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(tmp, db)
            finally:
                for leftover in (tmp, tmp + ".wal"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(leftover)

    def register_table(self, name, columns, data_uri, *, has_data, partition_column=None,
                       rejected_uri=None, partition_values=()) -> str:
        sql = view_sql(name, columns, data_uri, has_data=has_data,
                       partition_column=partition_column)
        with self._writer() as con:
            con.execute(sql)
            if rejected_uri:
                con.execute(
                    f"CREATE OR REPLACE VIEW {_q(name + '_rejected')} AS SELECT * FROM "
                    f"read_parquet({_lit(rejected_uri.rstrip('/') + '/*.parquet')}, "
                    "union_by_name=true)"
                )
            else:
                con.execute(f"DROP VIEW IF EXISTS {_q(name + '_rejected')}")
        return sql

    def query(self, sql: str) -> list[tuple]:
        db = self.db_path()
        if not db.exists():
            raise FileNotFoundError(f"catalog {db} does not exist yet: no table was registered")
        con = duckdb.connect(str(db), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
