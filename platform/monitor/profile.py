"""Column profiles of one raw file's staged Parquet, the input of the drift check.

A profile is a small JSON-able dict computed by DuckDB from the staged files while they are
still local: one scan for every column's counts, distinct count, mean, stddev, min and max, and
the quantiles and top values from a uniform sample of SAMPLE_ROWS rows (the whole file when it
is smaller; a share estimated from 100,000 rows is within about 0.3 points):

    {"rows": 120, "columns": {
      "amount":   {"kind": "number", "null_share": 0.0, "distinct": 57, "mean": 2.5,
                   "stddev": 0.4, "min": 1.0, "max": 4.0, "p05": 1.9, "p50": 2.5, "p95": 3.1},
      "currency": {"kind": "string", "null_share": 0.01, "distinct": 3,
                   "top": [["EUR", 0.8], ["USD", 0.15], ...]},        # share of all rows
      "order_date": {"kind": "time", "null_share": 0.0, "distinct": 1,
                     "min": "2026-11-20", "max": "2026-11-20"}}}

Numbers are int, float and decimal columns (bool too: mean = share of true, no quantiles).
Distinct counts are DuckDB's HyperLogLog estimates. Lineage columns are not profiled. Cost,
measured on 5 M rows of the orders columns (49 MB of Parquet, 2 threads): 1.3 s (full-scan
t-digest quantiles and top-k: 4.2 s; a REPEATABLE sample runs on one thread: 2.2 s).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..contracts import Contract
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit

TOP = 5
SAMPLE_ROWS = 100_000
MEMORY_LIMIT = "256MB"
NUMBER_TYPES = ("BIGINT", "DOUBLE", "DECIMAL", "INTEGER", "HUGEINT")


def column_kind(sql_type: str) -> str:
    """`number`, `bool`, `string` or `time` for a DuckDB type name."""
    t = sql_type.upper()
    if t == "BOOLEAN":
        return "bool"
    if t.startswith(NUMBER_TYPES) or t in ("FLOAT", "SMALLINT", "TINYINT"):
        return "number"
    if t.startswith(("DATE", "TIMESTAMP", "TIME")):
        return "time"
    return "string"


def _aggregates(name: str, kind: str) -> list[str]:
    c = _q(name)
    out = [f"count({c})", f"approx_count_distinct({c})"]
    if kind in ("number", "bool"):
        x = f"{c}::DOUBLE" if kind == "number" else f"{c}::INTEGER::DOUBLE"
        out += [f"avg({x})", f"stddev_samp({x})", f"min({x})", f"max({x})"]
    elif kind == "time":
        out += [f"min({c})::VARCHAR", f"max({c})::VARCHAR"]
    return out


def _num(v) -> float | None:
    return None if v is None else float(v)


def profile_files(paths: list[Path], contract: Contract) -> dict:
    """Profile the staged Parquet files of one raw file against the contract's columns.

    Returns {"rows": n, "columns": {name: column profile}} (see the module docstring); a
    column without non-null values has only its counts. Raises duckdb.Error if a file cannot
    be read.
    """
    if not paths:
        return {"rows": 0, "columns": {}}
    con = duckdb.connect()
    try:
        con.execute(f"SET memory_limit='{MEMORY_LIMIT}'")
        con.execute("SET threads=2")
        files = "[" + ", ".join(_lit(str(p)) for p in paths) + "]"
        con.execute(f"CREATE VIEW staged AS SELECT * FROM read_parquet({files}, "
                    "union_by_name=true)")
        present = {r[0]: r[1] for r in con.execute("DESCRIBE staged").fetchall()}
        cols = [(c.name, column_kind(present[c.name])) for c in contract.columns
                if c.name in present]
        exprs = ["count(*)"]
        for name, kind in cols:
            exprs += _aggregates(name, kind)
        row = list(con.execute(f"SELECT {', '.join(exprs)} FROM staged").fetchone())
        rows = int(row.pop(0))
        out: dict = {"rows": rows, "columns": {}}
        sampled = [n for n, k in cols if k in ("number", "string")]
        if rows and sampled:
            con.execute("CREATE TEMP TABLE sample AS SELECT " + ", ".join(map(_q, sampled))
                        + f" FROM staged USING SAMPLE reservoir({SAMPLE_ROWS} ROWS)")
            sample_rows = min(rows, SAMPLE_ROWS)
        strings = []
        for name, kind in cols:
            values = [row.pop(0) for _ in _aggregates(name, kind)]
            non_null, distinct = int(values[0]), int(values[1] or 0)
            p: dict = {"kind": kind, "null_share": (rows - non_null) / rows if rows else None,
                       "distinct": min(distinct, non_null)}
            if non_null and kind in ("number", "bool"):
                p.update(mean=_num(values[2]), stddev=_num(values[3]), min=_num(values[4]),
                         max=_num(values[5]))
                if kind == "number":
                    p.update(zip(("p05", "p50", "p95"), map(_num, con.execute(
                        f"SELECT quantile_cont({_q(name)}::DOUBLE, [0.05, 0.5, 0.95]) "
                        "FROM sample").fetchone()[0])))
            elif non_null and kind == "time":
                p.update(min=values[2], max=values[3])
            elif non_null and kind == "string":
                strings.append(name)
            out["columns"][name] = p
        for name in strings:
            c = _q(name)
            top = con.execute(f"SELECT {c}, count(*) AS n FROM sample WHERE {c} IS NOT NULL "
                              f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP}").fetchall()
            out["columns"][name]["top"] = [[str(v), n / sample_rows] for v, n in top]
        return out
    finally:
        con.close()
