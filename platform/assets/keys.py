"""The primary-key audit, run at commit time against the exact snapshot being committed on.

New rows (the staged files of the keys being committed) must have non-null, unique keys among
themselves and must not collide with committed rows that this commit does not replace. Only the
key columns are read: the staged files in full, and the committed files whose key bounds overlap
the new keys' range (Iceberg column statistics prune the rest), so the cost follows the change
for keys that grow with time (ids, timestamps) and never reads other columns.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual
from pyiceberg.table import Table

from ..sql import quote_ident as _q
from ..tables.commit import StagedVersion
from ..tables.schema import SOURCE_KEY

SAMPLE = 5


def _read(table: Table, paths: list[str], columns: list[str]) -> pa.Table:
    parts = []
    for p in paths:
        with table.io.new_input(p).open() as stream:
            parts.append(pq.read_table(stream, columns=columns))
    if not parts:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pa.concat_tables(parts, promote_options="permissive")


def primary_key_conflicts(table: Table, go: list[StagedVersion], *, replaced: set[str],
                          pk: tuple[str, ...]) -> tuple[dict[str, str], dict]:
    """Return ({raw key: reason} for files that would break the key, metadata)."""
    cols = list(pk) + [SOURCE_KEY]
    new = _read(table, [p for s in go for p in s.files], cols)
    if new.num_rows == 0:
        return {}, {"new_rows": 0}
    first = new[pk[0]]
    lo, hi = pc.min(first).as_py(), pc.max(first).as_py()
    old_paths = []
    if table.current_snapshot() is not None and lo is not None:
        scan = table.scan(row_filter=And(GreaterThanOrEqual(pk[0], lo),
                                         LessThanOrEqual(pk[0], hi)))
        old_paths = [t.file.file_path for t in scan.plan_files()]
    old = _read(table, old_paths, cols)
    if old.num_rows:
        old = old.filter(pc.invert(pc.is_in(old[SOURCE_KEY], pa.array(sorted(replaced),
                                                                       pa.string()))))
    keys = ", ".join(_q(c) for c in pk)
    any_null = " OR ".join(f"{_q(c)} IS NULL" for c in pk)
    src = _q(SOURCE_KEY)
    con = duckdb.connect()
    try:
        con.register("new_rows", new)
        con.register("old_rows", old)
        nulls = con.execute(f"SELECT {src}, count(*) FROM new_rows WHERE {any_null} "
                            "GROUP BY ALL").fetchall()
        dups = con.execute(
            f"SELECT {keys}, list(DISTINCT {src}), count(*) FROM new_rows WHERE NOT ({any_null}) "
            f"GROUP BY ALL HAVING count(*) > 1 ORDER BY count(*) DESC").fetchall()
        clash = con.execute(
            f"SELECT n.{src}, count(*), any_value(o.{src}) FROM new_rows n JOIN old_rows o "
            f"USING ({keys}) GROUP BY ALL").fetchall()
    finally:
        con.close()
    refused: dict[str, list[str]] = {}
    for key, n in nulls:
        refused.setdefault(key, []).append(f"{n} row(s) with a null key")
    for row in dups:
        for key in row[len(pk)]:
            others = [k for k in row[len(pk)] if k != key]
            where = f"also in {others[:3]}" if others else "within the file"
            refused.setdefault(key, []).append(
                f"key {list(map(str, row[:len(pk)]))} appears {row[-1]} times ({where})")
    for key, n, other in clash:
        refused.setdefault(key, []).append(f"{n} key(s) already committed from {other!r}")
    meta = {"new_rows": new.num_rows, "committed_rows_compared": old.num_rows,
            "committed_files_read": len(old_paths), "null_keys": sum(n for _, n in nulls),
            "duplicate_keys": len(dups) + sum(n for _, n, _ in clash)}
    return {k: "; ".join(v[:SAMPLE]) for k, v in refused.items()}, meta
