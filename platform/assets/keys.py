"""The primary-key audit, run at commit time against the exact snapshot being committed on.

New rows (the staged files of the keys being committed) must have non-null, unique keys among
themselves and must not collide with committed rows that this commit does not replace. Only the
key columns are read: the staged files in full, and the committed files whose key bounds overlap
the new keys' range (Iceberg column statistics prune the rest), so the cost follows the change
for keys that grow with time (ids, timestamps) and never reads other columns.

Most keys are one integer, date or timestamp column: up to SORT_ROWS new keys are proven unique
in memory as int64, and each file's are proven while it is staged (`key_facts`, kept in its
staging record), so the commit only compares ranges when the files' ranges do not meet. Dense
keys (ids: values spanning at most DENSE_SPAN times their count) set one flag per possible value
and count the flags (~0.05 s for 11 M ids); others are sorted. The sort is numpy's stable one
(timsort) when the keys are a few increasing runs (staged files of ids or timestamps are a few
dozen, one per row group a DuckDB thread wrote): ~0.05 s for 11 M keys, where the quicksort
took ~0.3 s and DuckDB's distinct count ~1.3 s; keys in no order (hashes, random ids) take the
quicksort (timsort is ~5x slower there). Other keys, more rows, nulls, duplicates (to name the
files) or committed rows in range take DuckDB's path, which spills to disk.
"""

from __future__ import annotations

import datetime
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual
from pyiceberg.table import Table

from .. import duckdb_pool
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from ..tables.commit import StagedVersion
from ..tables.schema import SOURCE_KEY

SAMPLE = 5
SORT_ROWS = 32_000_000  # 256 MB of int64 keys
DENSE_SPAN = 4  # keys spanning at most 4x their count are checked with a flag per value
MERGE_RUNS = 4096  # increasing runs merged by timsort; more: quicksort
MEMORY_LIMIT = "384MB"  # the key columns spill to a temp folder beyond this
duckdb_pool.register("keys")  # the staged keys' reads (DuckDB's defaults, as a new database)


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


def key_facts(paths: list[Path], pk: tuple[str, ...]) -> dict | None:
    """Facts about the keys of one raw file's staged files (local), JSON-able, computed while
    it is staged (off the commit's path): {"rows", "kind", "lo", "hi"} when the key is one
    integer, date or timestamp column whose values there are non-null and unique; None
    otherwise, or when the files cannot be read here (the commit then reads the keys itself)."""
    if len(pk) != 1:
        return None
    try:
        found = _sorted_unique(None, [str(p) for p in paths], pk[0])
    except Exception:  # noqa: BLE001 - only a shortcut: the commit then checks by itself
        return None
    if found is None:
        return None
    rows, lo, hi = found
    kind = "date" if isinstance(lo, datetime.date) and not isinstance(lo, datetime.datetime) \
        else "timestamp" if isinstance(lo, datetime.datetime) else "int"
    as_json = (lambda v: v) if kind == "int" else (lambda v: v and v.isoformat())
    return {"rows": rows, "kind": kind, "lo": as_json(lo), "hi": as_json(hi)}


def _from_facts(go: list[StagedVersion], facts: dict[str, dict | None]
                ) -> tuple[int, object, object] | None:
    """(rows, min, max) of the new keys from the staged facts of every file, when each file
    has them and no two files' key ranges meet (then no key is in two files); else None."""
    ranges, rows = [], 0
    try:
        for s in go:
            f = facts.get(s.key)
            if not f or f.get("kind") not in _PARSE:
                return None
            rows += f["rows"]
            if f["rows"]:
                ranges.append((_PARSE[f["kind"]](f["lo"]), _PARSE[f["kind"]](f["hi"])))
        ranges.sort()
        if any(a[1] >= b[0] for a, b in zip(ranges, ranges[1:])):
            return None
    except (TypeError, ValueError, KeyError):  # kinds that do not compare: read the keys
        return None
    return rows, (ranges[0][0] if ranges else None), (ranges[-1][1] if ranges else None)


def _read_local(paths: list[str], column: str) -> pa.ChunkedArray | None:
    """`column` of local Parquet files (None beyond SORT_ROWS rows, counted from footers)."""
    con = duckdb_pool.connect("keys")
    try:
        con.execute("SET TimeZone='UTC'")  # timestamps with a zone come back in UTC
        files = "[" + ", ".join(_lit(p) for p in paths) + "]"
        if con.execute(f"SELECT count(*) FROM read_parquet({files})").fetchall()[0][0] \
                > SORT_ROWS:
            return None
        return con.sql(f"SELECT {_q(column)} FROM read_parquet({files})").to_arrow_table() \
            .column(0)
    finally:
        con.close()


def _read_remote(io, path: str, column: str) -> pa.ChunkedArray:
    with io.new_input(path).open() as stream:
        return pq.read_table(stream, columns=[column]).column(0)


_PARSE = {"int": int, "date": datetime.date.fromisoformat,
          "timestamp": datetime.datetime.fromisoformat}


def _sorted_unique(io, paths: list[str], column: str) -> tuple[int, object, object] | None:
    """(rows, min, max) of an integer, date or timestamp `column` over the files when it has
    no null and no value twice (found by sorting the column as int64, in memory: at most
    SORT_ROWS rows); None when that is not so or cannot be decided here."""
    parts, rows = [], 0
    local = [p[len("file://"):] if p.startswith("file://") else p for p in paths]
    if paths and not any("://" in p for p in local):
        found = _read_local(local, column)  # DuckDB reads local files ~2x faster than pyarrow
        if found is None:
            return None
        columns = [found]
    else:
        columns = (_read_remote(io, p, column) for p in paths)
    for col in columns:
        kind = col.type
        if not (pa.types.is_integer(kind) or pa.types.is_date(kind)
                or pa.types.is_timestamp(kind)) or col.null_count:
            return None
        rows += len(col)
        if rows > SORT_ROWS:
            return None
        parts.append(col)
    if not rows:
        return 0, None, None
    chunks = [c for col in parts for c in col.chunks if len(c)]
    bounds = pc.min_max(pa.chunked_array(chunks))
    lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
    as_int = pa.int32() if pa.types.is_date32(chunks[0].type) else pa.int64()
    ints = [c.cast(as_int) for c in chunks]
    first = int(bounds["min"].cast(as_int).as_py())
    span = int(bounds["max"].cast(as_int).as_py()) - first + 1
    if span <= DENSE_SPAN * rows:  # dense keys (ids): one flag per possible value
        seen = np.zeros(span, bool)
        for c in ints:
            seen[c.to_numpy() - first] = True
        return (rows, lo, hi) if int(np.count_nonzero(seen)) == rows else None
    values = np.empty(rows, np.int64)
    at = 0
    for c in ints:
        values[at:at + len(c)] = c.to_numpy()
        at += len(c)
    runs = int(np.count_nonzero(values[1:] < values[:-1])) + 1
    values.sort(kind="stable" if runs <= MERGE_RUNS else "quicksort")
    if np.any(values[1:] == values[:-1]):
        return None
    return rows, lo, hi


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
