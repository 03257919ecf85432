"""Bench sides that are not ours: pandas (naive and typed) and the bare engines.

Each function runs inside the child process `clean_csv.py --side NAME` starts, so its memory is
measured alone. Each returns its timing plus what it wrote (`profile`: rows, column types and
null counts from the Parquet footers), which report.py compares with ours for the correctness
column. Nothing here rejects rows the way ours does; report.py says what each side did with the
injected bad rows.
- baseline: naive pandas read_csv -> to_parquet (timestamps stay text): context only.
- baseline_typed: pandas producing the same typed columns as ours, coercing bad values to NULL.
- duckdb_bare: DuckDB's own `COPY (SELECT * FROM read_csv(<contract types>, store_rejects))`:
  the fastest way DuckDB makes this Parquet, with none of our rules (no line numbers, no
  not-null row rules, no lineage columns or field ids).
- polars: `scan_csv(schema=...)` -> `sink_parquet`, streaming. Polars cannot reject a row:
  with `ignore_errors=True` a bad value becomes NULL and the row is kept (without it the first
  bad value stops the file). Its CSV reader has no timestamp-with-offset type, so `created_at`
  is read as text and converted with `str.to_datetime(time_zone="UTC")` in the same lazy plan.
"""

from __future__ import annotations

import time
from pathlib import Path

NULLS = ["", "NA", "N/A", "NULL", "null", "NaN"]  # the contract's default null markers
DUCK_TYPES = {"int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMPTZ", "date": "DATE",
              "string": "VARCHAR", "bool": "BOOLEAN"}


def cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return ru.ru_utime + ru.ru_stime


def out_bytes(p: Path) -> int:
    if p.is_file():
        return p.stat().st_size
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def kind(t) -> str:
    """A coarse type name, so ns/us timestamps or string/large_string compare equal."""
    import pyarrow as pa

    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    if pa.types.is_timestamp(t):
        return "timestamp" + ("_utc" if t.tz else "")
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def profile(files: list[Path]) -> dict:
    """Rows, column kinds and null counts of Parquet files, from their footers only."""
    import pyarrow.parquet as pq

    rows, types, nulls = 0, {}, {}
    for f in files:
        pf = pq.ParquetFile(f)
        md = pf.metadata
        rows += md.num_rows
        arrow = pf.schema_arrow
        for name in arrow.names:
            types.setdefault(name, kind(arrow.field(name).type))
        for rg in range(md.num_row_groups):
            g = md.row_group(rg)
            for c in range(g.num_columns):
                col = g.column(c)
                name = col.path_in_schema
                st = col.statistics
                n = st.null_count if st is not None and st.has_null_count else None
                nulls[name] = None if n is None or nulls.get(name, 0) is None \
                    else nulls.get(name, 0) + n
    return {"rows": rows, "types": types, "nulls": nulls}


def _timed(out: Path, script, **extra) -> dict:
    """Run `script()` (writes out/out.parquet, returns rows written or None), timing it."""
    out.mkdir(parents=True, exist_ok=True)
    t, c = time.perf_counter(), cpu()
    try:
        rows = script()
    except Exception as e:  # a failure is a result too
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t,
                "cpu_seconds": cpu() - c}
    res = {"seconds": time.perf_counter() - t, "cpu_seconds": cpu() - c, "rows_in": None,
           "rows_written": rows, "rows_rejected": None, "out_bytes": out_bytes(out)}
    res["profile"] = profile([out / "out.parquet"])
    if rows is None:  # counted from the footer, outside the timing
        res["rows_written"] = res["profile"]["rows"]
    res.update(extra)
    return res


def side_baseline(path: Path, out: Path, contract: dict) -> dict:
    import pandas as pd

    # What a naive script ends up as. Without on_bad_lines="skip" read_csv raises on the rows
    # with too many fields. Without low_memory=False the chunk-wise typing leaves floats and
    # strings mixed in the columns holding `12x`/`12.3.4`, and to_parquet raises ArrowTypeError.
    def script() -> int:
        df = pd.read_csv(path, on_bad_lines="skip", low_memory=False)
        df.to_parquet(out / "out.parquet")
        return len(df)

    return _timed(out, script)


def side_baseline_typed(path: Path, out: Path, contract: dict) -> dict:
    """The hand-built script producing the same typed Parquet as ours (ints, floats, UTC
    timestamps, dates), coercing what does not parse to NULL, as such scripts do (silently)."""
    import pandas as pd

    def script() -> int:
        df = pd.read_csv(path, on_bad_lines="skip", low_memory=False, dtype="string",
                         keep_default_na=False, na_values=NULLS)
        for c in contract["columns"]:
            name, typ = c["name"], c["type"]
            if typ == "int":
                df[name] = pd.to_numeric(df[name], errors="coerce").astype("Int64")
            elif typ == "float":
                df[name] = pd.to_numeric(df[name], errors="coerce")
            elif typ == "timestamp":
                df[name] = pd.to_datetime(df[name], utc=True, errors="coerce", format="ISO8601")
            elif typ == "date":
                df[name] = pd.to_datetime(df[name], errors="coerce", format="%Y-%m-%d") \
                    .astype("date32[pyarrow]")
        df.to_parquet(out / "out.parquet")
        return len(df)

    return _timed(out, script)


def bare_copy_sql(path: Path, target: Path, contract: dict) -> str:
    """The bare DuckDB side's one statement (run after `SET preserve_insertion_order=false`)."""
    cols = "{" + ", ".join(f"'{c['name']}': '{DUCK_TYPES[c['type']]}'"
                           for c in contract["columns"]) + "}"
    return (f"COPY (SELECT * FROM read_csv('{path}', columns={cols}, header=true, "
            f"auto_detect=false, nullstr={NULLS!r}, store_rejects=true, timestampformat='ISO', "
            f"dateformat='%Y-%m-%d')) TO '{target}' (FORMAT parquet, COMPRESSION snappy)")


def side_duckdb_bare(path: Path, out: Path, contract: dict) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET preserve_insertion_order=false")
    target = out / "out.parquet"

    def script() -> int:
        con.execute(bare_copy_sql(path, target, contract))

    res = _timed(out, script)
    if "error" not in res:
        res["rows_rejected"] = con.execute(
            "SELECT count(DISTINCT line) FROM reject_errors").fetchone()[0]
        res["rows_in"] = res["rows_written"] + res["rows_rejected"]
        res["note"] = ("rejects rows it cannot parse (no line numbers in the file, no row "
                       "rules: null ids kept), no lineage columns or field ids")
    return res


def side_polars(path: Path, out: Path, contract: dict) -> dict:
    try:
        import polars as pl
    except ImportError:
        return {"error": "polars is not installed (pip install -e '.[bench]')", "seconds": 0.0,
                "cpu_seconds": 0.0}
    types = {"int": pl.Int64, "float": pl.Float64, "string": pl.String, "date": pl.Date,
             "timestamp": pl.String, "bool": pl.Boolean}
    schema = {c["name"]: types[c["type"]] for c in contract["columns"]}
    ts = [c["name"] for c in contract["columns"] if c["type"] == "timestamp"]

    def script() -> int:
        lf = pl.scan_csv(path, schema=schema, ignore_errors=True, truncate_ragged_lines=True,
                         null_values=NULLS)
        lf = lf.with_columns([pl.col(c).str.to_datetime(time_zone="UTC", strict=False,
                                                        time_unit="us") for c in ts])
        lf.sink_parquet(out / "out.parquet", compression="snappy")

    return _timed(out, script, rows_rejected=0,
                  note="no rejects: bad values become NULL, ragged rows are truncated or "
                       "padded and kept; timestamps read as text, converted to UTC in the plan")
