"""Facts about a staged file's keys, computed while it is staged (off the commit's path).

Most keys are one integer, date or timestamp column: up to SORT_ROWS new keys are proven unique
in memory as int64, and each file's are proven while it is staged (`key_facts`, kept in its
staging record), so the commit (keys.py) only compares ranges when the files' ranges do not
meet. Dense keys (ids: values spanning at most DENSE_SPAN times their count) set one flag per
possible value and count the flags (~0.05 s for 11 M ids); others are sorted. The sort is
numpy's stable one (timsort) when the keys are a few increasing runs (staged files of ids or
timestamps are a few dozen, one per row group a DuckDB thread wrote): ~0.05 s for 11 M keys,
where the quicksort took ~0.3 s and DuckDB's distinct count ~1.3 s; keys in no order (hashes,
random ids) take the quicksort (timsort is ~5x slower there). Local files are streamed from
DuckDB in batches (`_streamed_local`); remote ones are read whole by pyarrow.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .. import duckdb_pool
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from ..tables.commit import StagedVersion

SORT_ROWS = 32_000_000  # 256 MB of int64 keys
DENSE_SPAN = 4  # keys spanning at most 4x their count are checked with a flag per value
MERGE_RUNS = 4096  # increasing runs merged by timsort; more: quicksort
duckdb_pool.register("keys")  # the staged keys' reads (DuckDB's defaults, as a new database)


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
        streamed = _streamed_local(local, column)
        if streamed is not _UNKNOWN:
            return streamed
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


_UNKNOWN = object()  # the footers do not say: read the whole column instead
BATCH = 1 << 20  # keys per batch streamed from DuckDB (8 MB as int64)


def _footer_bounds(paths: list[str], column: str) -> tuple[int, int, int] | None:
    """(rows, smallest, largest) of an integer-stored `column` (ints; dates as days and
    timestamps in their unit, as stored) from the files' footers; None when a footer lacks
    them; (rows, None, None) when one counts a null."""
    rows, lo, hi, nulls = 0, None, None, False
    for path in paths:
        meta = pq.read_metadata(path)
        index = [meta.schema.column(i).name for i in range(meta.num_columns)]
        if column not in index:
            return None
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            rows += group.num_rows
            if not group.num_rows:
                continue
            st = group.column(index.index(column)).statistics
            if st is None or not st.has_null_count or st.physical_type not in ("INT32", "INT64"):
                return None
            if st.null_count:
                nulls = True
            elif not st.has_min_max:
                return None
            else:
                lo = st.min_raw if lo is None else min(lo, st.min_raw)
                hi = st.max_raw if hi is None else max(hi, st.max_raw)
    return (rows, None, None) if nulls else (rows, lo, hi)


def _streamed_local(paths: list[str], column: str):
    """`_sorted_unique` of local files, the column streamed from DuckDB in batches instead of
    materialized (with its copies: ~26,000 fresh pages for 11 M ids against ~8,000, and
    ~100 ms against ~140 ms in a new process): the footers give the range the flags need
    before the first key is read; every batch is checked to lie inside it, so a footer that
    is wrong makes the answer None, never a wrong one. _UNKNOWN when the footers lack the
    range (the caller reads the whole column)."""
    bounds = _footer_bounds(paths, column)
    if bounds is None:
        return _UNKNOWN
    rows, first, last = bounds
    if rows > SORT_ROWS or (rows and first is None):  # too many, or a null key
        return None
    if not rows:
        return 0, None, None
    span = last - first + 1
    dense = span <= DENSE_SPAN * rows
    con = duckdb_pool.connect("keys")
    try:
        con.execute("SET TimeZone='UTC'")  # timestamps with a zone come back in UTC
        files = "[" + ", ".join(_lit(p) for p in paths) + "]"
        reader = con.sql(f"SELECT {_q(column)} FROM read_parquet({files})").to_arrow_reader(BATCH)
        kind = reader.schema.field(0).type
        if not (pa.types.is_integer(kind) or pa.types.is_date(kind)
                or pa.types.is_timestamp(kind)):
            return None
        as_int = pa.int32() if pa.types.is_date32(kind) else pa.int64()
        seen = np.zeros(span, bool) if dense else None
        values = None if dense else np.empty(rows, np.int64)
        shifted = np.empty(BATCH, np.int64) if dense else None
        n, lo_raw, hi_raw = 0, last, first
        for batch in reader:
            keys = batch.column(0)
            if keys.null_count or n + len(keys) > rows:
                return None
            a = keys.cast(as_int).to_numpy()
            if not len(a):
                continue
            low, high = int(a.min()), int(a.max())
            if low < first or high > last:
                return None  # a footer's range is wrong: decide nothing from it
            lo_raw, hi_raw = min(lo_raw, low), max(hi_raw, high)
            if dense:
                if len(a) > len(shifted):
                    shifted = np.empty(len(a), np.int64)
                out = shifted[:len(a)]
                np.subtract(a, first, out=out)
                seen[out] = True
            else:
                values[n:n + len(a)] = a
            n += len(a)
    finally:
        con.close()
    if n != rows:
        return None
    if dense:
        unique = int(np.count_nonzero(seen)) == rows
    else:
        runs = int(np.count_nonzero(values[1:] < values[:-1])) + 1
        values.sort(kind="stable" if runs <= MERGE_RUNS else "quicksort")
        unique = not np.any(values[1:] == values[:-1])
    if not unique:
        return None
    lo, hi = (pa.scalar(v, as_int).cast(kind).as_py() for v in (lo_raw, hi_raw))
    return rows, lo, hi
