"""SQL views that show people the current snapshot of each Iceberg table, in a DuckDB file.

A view reads exactly the data files of one snapshot: `read_parquet([file, ...])` with each column
cast to the table's current type (older files lacking a newer column read it as NULL). This works
with any DuckDB a person has (DuckDB's iceberg extension exists only for older DuckDB releases and
must be installed from the network), and the file can be opened read-only while the platform
runs. Column renames would need Iceberg's field-id mapping; the platform refuses renames as a
breaking change, so matching by name is exact. Delete files are never written by the platform;
a snapshot that has them (written by another engine) is refused rather than shown wrong.
"""

from __future__ import annotations

from pyiceberg.manifest import DataFileContent
from pyiceberg.table import Table

from ..contracts import duckdb_type
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from .schema import contract_type


def snapshot_files(table: Table, snapshot_id: int | None = None,
                   present: set[int] | None = None) -> list[str]:
    """The data files of a snapshot (default: current), in a stable order.

    `present`, when given, receives the field ids that at least one file holds.
    """
    snap = table.current_snapshot() if snapshot_id is None else table.snapshot_by_id(snapshot_id)
    if snap is None:
        return []
    files = []
    for task in table.scan(snapshot_id=snap.snapshot_id).plan_files():
        if task.delete_files:
            raise ValueError(f"{table.name()} snapshot {snap.snapshot_id} has delete files; "
                             "the local views cannot show it exactly")
        if task.file.content == DataFileContent.DATA:
            files.append(task.file.file_path)
            if present is not None:
                present.update((task.file.value_counts or {}).keys())
    return sorted(files)


def local_path(uri: str) -> str:
    return uri[len("file://"):] if uri.startswith("file://") else uri


def view_sql(view: str, table: Table, snapshot_id: int | None = None,
             empty: bool = False) -> str:
    """`CREATE OR REPLACE VIEW` over one snapshot of `table` (default: current).

    `empty` makes a view with the table's columns and no row (the table before its first
    snapshot).
    """
    fields = table.schema().fields
    present: set[int] = set()
    files = [] if empty else snapshot_files(table, snapshot_id, present)
    if not files:
        nulls = ", ".join(f"CAST(NULL AS {_type(f)}) AS {_q(f.name)}" for f in fields)
        return f"CREATE OR REPLACE VIEW {_q(view)} AS SELECT {nulls} WHERE false"
    # A column no file holds yet (just added by evolution) is NULL for every row.
    select = ", ".join(
        f"CAST({_q(f.name) if f.field_id in present else 'NULL'} AS {_type(f)}) AS {_q(f.name)}"
        for f in fields)
    paths = ", ".join(_lit(local_path(f)) for f in files)
    return (f"CREATE OR REPLACE VIEW {_q(view)} AS SELECT {select} FROM read_parquet([{paths}], "
            "union_by_name=true, hive_partitioning=false)")


def _type(field) -> str:
    return duckdb_type(contract_type(field.field_type))
