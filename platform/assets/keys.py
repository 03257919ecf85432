"""The primary-key audit, run at commit time against the exact snapshot being committed on.

New rows (the staged files of the keys being committed) must have non-null, unique keys among
themselves and must not collide with committed rows that this commit does not replace. Only the
key columns are read: the staged files in full, and the committed files whose key bounds overlap
the new keys' range (Iceberg column statistics prune the rest), so the cost follows the change
for keys that grow with time (ids, timestamps) and never reads other columns.
"""

from __future__ import annotations

import tempfile

import duckdb
import pyarrow.parquet as pq
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual
from pyiceberg.table import Table

from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from ..tables.commit import StagedVersion
from ..tables.schema import SOURCE_KEY

SAMPLE = 5
MEMORY_LIMIT = "384MB"  # the key columns spill to a temp folder beyond this


def _load(con, name: str, table: Table, paths: list[str], columns: list[str]) -> int:
    """Load the key columns of `paths` into DuckDB table `name` (spilling past its memory
    limit), one file at a time; returns the row count."""
    cols = ", ".join(_q(c) for c in columns)
    created = False
    for p in paths:
        local = p[len("file://"):] if p.startswith("file://") else p
        if "://" not in local:  # a local file: DuckDB streams it itself
            source = f"read_parquet({_lit(local)})"
        else:  # remote: one file's key columns through pyarrow (a dictionary for the key)
            with table.io.new_input(p).open() as stream:
                part = pq.read_table(stream, columns=columns, read_dictionary=[SOURCE_KEY])
            con.register("_part", part)
            source = "_part"
        verb = "INSERT INTO" if created else "CREATE TEMP TABLE"
        select = f"SELECT {cols} FROM {source}"
        con.execute(f"{verb} {name} {select}" if created else f"{verb} {name} AS {select}")
        created = True
        if source == "_part":
            con.unregister("_part")
    if not created:
        con.execute(f"CREATE TEMP TABLE {name} AS SELECT " + ", ".join(
            f"NULL::VARCHAR AS {_q(c)}" for c in columns) + " WHERE false")
    return con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]


def primary_key_conflicts(table: Table, go: list[StagedVersion], *, replaced: set[str],
                          pk: tuple[str, ...]) -> tuple[dict[str, str], dict]:
    """Return ({raw key: reason} for files that would break the key, metadata)."""
    cols = list(pk) + [SOURCE_KEY]
    keys = ", ".join(_q(c) for c in pk)
    any_null = " OR ".join(f"{_q(c)} IS NULL" for c in pk)
    src = _q(SOURCE_KEY)
    with tempfile.TemporaryDirectory(prefix="pk-") as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit='{MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory={_lit(tmp)}")
            n_new = _load(con, "new_rows", table, [p for s in go for p in s.files], cols)
            if n_new == 0:
                return {}, {"new_rows": 0}
            lo, hi = con.execute(f"SELECT min({_q(pk[0])}), max({_q(pk[0])}) "
                                 "FROM new_rows").fetchone()
            old_paths = []
            if table.current_snapshot() is not None and lo is not None:
                scan = table.scan(row_filter=And(GreaterThanOrEqual(pk[0], lo),
                                                 LessThanOrEqual(pk[0], hi)))
                old_paths = [t.file.file_path for t in scan.plan_files()]
            n_old = _load(con, "old_rows", table, old_paths, cols)
            if replaced and n_old:
                con.execute(f"DELETE FROM old_rows WHERE {src} IN (SELECT unnest(?))",
                            [sorted(replaced)])
            nulls = con.execute(f"SELECT {src}, count(*) FROM new_rows WHERE {any_null} "
                                "GROUP BY ALL").fetchall()
            dups = con.execute(
                f"SELECT {keys}, list(DISTINCT {src}), count(*) FROM new_rows "
                f"WHERE NOT ({any_null}) GROUP BY ALL HAVING count(*) > 1 "
                f"ORDER BY count(*) DESC LIMIT 1000").fetchall()
            clash = con.execute(
                f"SELECT n.{src}, count(*), any_value(o.{src}) FROM new_rows n "
                f"JOIN old_rows o USING ({keys}) GROUP BY ALL").fetchall() if n_old else []
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
    meta = {"new_rows": n_new, "committed_rows_compared": n_old,
            "committed_files_read": len(old_paths), "null_keys": sum(n for _, n in nulls),
            "duplicate_keys": len(dups) + sum(n for _, n, _ in clash)}
    return {k: "; ".join(v[:SAMPLE]) for k, v in refused.items()}, meta
