"""The primary-key audit, run at commit time against the exact snapshot being committed on.

New rows (the staged files of the keys being committed) must have non-null, unique keys among
themselves and must not collide with committed rows that this commit does not replace. Only the
key columns are read: the staged files in full, and the committed files whose key bounds overlap
the new keys' range (Iceberg column statistics prune the rest), so the cost follows the change
for keys that grow with time (ids, timestamps) and never reads other columns.

Most keys are one integer, date or timestamp column, proven unique in memory (key_facts.py),
each file's while it is staged, so the commit only compares ranges when the files' ranges do
not meet. Other keys, more rows, nulls, duplicates (to name the files) or committed rows in
range take DuckDB's path, which spills to disk.
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
from .key_facts import _from_facts, _sorted_unique

SAMPLE = 5
MEMORY_LIMIT = "384MB"  # the key columns spill to a temp folder beyond this


def _load(con, name: str, table: Table, files: list[tuple[str, str]], pk: tuple[str, ...]
          ) -> tuple[int, list[str]]:
    """Load the key columns of `files` ([(path, raw key)]) into DuckDB table `name`, file by
    file (spilling past the memory limit), tagging each row with a small file number instead
    of its raw key (a string per row would cost more than the keys). Returns (rows, the raw
    key of each file number)."""
    cols = ", ".join(_q(c) for c in pk)
    owners: list[str] = []
    created = False
    for path, owner in files:
        local = path[len("file://"):] if path.startswith("file://") else path
        if "://" not in local:  # a local file: DuckDB streams it itself
            source = f"read_parquet({_lit(local)})"
        else:  # remote: one file's key columns through pyarrow
            with table.io.new_input(path).open() as stream:
                con.register("_part", pq.read_table(stream, columns=list(pk)))
            source = "_part"
        select = f"SELECT {cols}, {len(owners)}::INTEGER AS _f FROM {source}"
        con.execute(f"INSERT INTO {name} {select}" if created
                    else f"CREATE TEMP TABLE {name} AS {select}")
        owners.append(owner)
        created = True
        if source == "_part":
            con.unregister("_part")
    if not created:
        return 0, owners
    return con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0], owners


def primary_key_conflicts(table: Table, go: list[StagedVersion], *, replaced: set[str],
                          pk: tuple[str, ...], facts: dict[str, dict | None] | None = None
                          ) -> tuple[dict[str, str], dict]:
    """Return ({raw key: reason} for files that would break the key, metadata).

    `facts` ({raw key: `key_facts` of its staged files}, computed while the file was staged)
    spare reading the new keys again when every file has them and their ranges are disjoint.
    One pass counts null and duplicate keys; only when there are any do the (costlier) queries
    that name the files run.
    """
    keys = ", ".join(_q(c) for c in pk)
    tuple_ = f"({keys})" if len(pk) > 1 else keys
    any_null = " OR ".join(f"{_q(c)} IS NULL" for c in pk)
    nulls, dups, clash = [], [], []
    files = [p for s in go for p in s.files]
    method, fast = "staged facts", _from_facts(go, facts or {}) if len(pk) == 1 else None
    if fast is None and len(pk) == 1:
        method, fast = "sorted in memory", _sorted_unique(table.io, files, pk[0])
    if fast is not None:
        n_new, lo, hi = fast
        if n_new == 0:
            return {}, {"new_rows": 0}
        if not _committed_in_range(table, pk, lo, hi):
            return {}, {"new_rows": n_new, "committed_rows_compared": 0,
                        "committed_files_read": 0, "null_keys": 0, "duplicate_keys": 0,
                        "method": method}
    with tempfile.TemporaryDirectory(prefix="pk-") as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit='{MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory={_lit(tmp)}")
            n_new, new_owner = _load(con, "new_rows", table,
                                     [(p, s.key) for s in go for p in s.files], pk)
            if n_new == 0:
                return {}, {"new_rows": 0}
            lo, hi, n_null, n_dup = con.execute(
                f"SELECT min({_q(pk[0])}), max({_q(pk[0])}), count(*) FILTER ({any_null}), "
                f"count(*) FILTER (NOT ({any_null})) - count(DISTINCT {tuple_}) "
                f"FILTER (NOT ({any_null})) FROM new_rows").fetchall()[0]
            # Committed rows whose key range overlaps, minus the rows this commit replaces.
            old_files = _committed_in_range(table, pk, lo, hi)
            old_keys = _old_rows(con, table, old_files, pk, replaced)
            if n_null:
                nulls = [(new_owner[f], n) for f, n in con.execute(
                    f"SELECT _f, count(*) FROM new_rows WHERE {any_null} GROUP BY ALL")
                    .fetchall()]
            if n_dup:
                dups = [(row[:len(pk)], sorted({new_owner[f] for f in row[len(pk)]}), row[-1])
                        for row in con.execute(
                    f"SELECT {keys}, list(DISTINCT _f), count(*) FROM new_rows "
                    f"WHERE NOT ({any_null}) GROUP BY ALL HAVING count(*) > 1 "
                    f"ORDER BY count(*) DESC LIMIT 1000").fetchall()]
            if old_keys:
                clash = [(new_owner[f], n, old) for f, n, old in con.execute(
                    f"SELECT n._f, count(*), any_value(o.{_q(SOURCE_KEY)}) FROM new_rows n "
                    f"JOIN old_rows o USING ({keys}) GROUP BY ALL").fetchall()]
        finally:
            con.close()
    refused: dict[str, list[str]] = {}
    for key, n in nulls:
        refused.setdefault(key, []).append(f"{n} row(s) with a null key")
    for values, owners, n in dups:
        for key in owners:
            others = [k for k in owners if k != key]
            where = f"also in {others[:3]}" if others else "within the file"
            refused.setdefault(key, []).append(
                f"key {list(map(str, values))} appears {n} times ({where})")
    for key, n, other in clash:
        refused.setdefault(key, []).append(f"{n} key(s) already committed from {other!r}")
    meta = {"new_rows": n_new, "committed_rows_compared": old_keys,
            "committed_files_read": len(old_files), "null_keys": int(n_null),
            "duplicate_keys": int(n_dup) + sum(n for _, n, _ in clash)}
    return {k: "; ".join(v[:SAMPLE]) for k, v in refused.items()}, meta


def _committed_in_range(table: Table, pk: tuple[str, ...], lo, hi) -> list[str]:
    """The committed data files whose first key column may hold values in [lo, hi]."""
    if table.current_snapshot() is None or lo is None:
        return []
    scan = table.scan(row_filter=And(GreaterThanOrEqual(pk[0], lo), LessThanOrEqual(pk[0], hi)),
                      selected_fields=(*pk, SOURCE_KEY))
    return [t.file.file_path for t in scan.plan_files()]


def _old_rows(con, table: Table, paths: list[str], pk: tuple[str, ...],
              replaced: set[str]) -> int:
    """Load committed key columns (and their raw key) of `paths` into `old_rows`, without the
    rows of `replaced` keys; returns how many remain."""
    cols = [*pk, SOURCE_KEY]
    created = False
    for path in paths:
        with table.io.new_input(path).open() as stream:
            part = pq.read_table(stream, columns=cols, read_dictionary=[SOURCE_KEY])
        con.register("_part", part)
        select = ("SELECT " + ", ".join(_q(c) for c in cols) + " FROM _part WHERE "
                  f"{_q(SOURCE_KEY)} NOT IN (SELECT unnest(?::VARCHAR[]))")
        con.execute(f"INSERT INTO old_rows {select}" if created
                    else f"CREATE TEMP TABLE old_rows AS {select}", [sorted(replaced)])
        con.unregister("_part")
        created = True
    if not created:
        return 0
    return con.execute("SELECT count(*) FROM old_rows").fetchall()[0][0]
