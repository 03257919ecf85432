"""Column profiles of one raw file's staged Parquet, the input of the drift check.

A profile is a small JSON-able dict computed by DuckDB from the staged files while they are
still local (one scan for every column's counts, moments and quantiles; one more for the top
values of string columns):

    {"rows": 120, "columns": {
      "amount":   {"kind": "number", "null_share": 0.0, "distinct": 57, "mean": 2.5,
                   "stddev": 0.4, "min": 1.0, "max": 4.0, "p05": 1.9, "p50": 2.5, "p95": 3.1},
      "currency": {"kind": "string", "null_share": 0.01, "distinct": 3,
                   "top": [["EUR", 0.8], ["USD", 0.15], ...]},        # share of all rows
      "order_date": {"kind": "time", "null_share": 0.0, "distinct": 1,
                     "min": "2026-11-20", "max": "2026-11-20"}}}

Numbers are int, float and decimal columns (bool too: mean = share of true, no quantiles).
Distinct counts and quantiles are DuckDB's approximations (HyperLogLog, t-digest): cheap on
large files, exact enough to compare files. Lineage columns are not profiled.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from ..contracts import Contract
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit

TOP = 5
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
        if kind == "number":
            out.append(f"approx_quantile({x}, [0.05, 0.5, 0.95])")
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
                    p.update(zip(("p05", "p50", "p95"), map(_num, values[6])))
            elif non_null and kind == "time":
                p.update(min=values[2], max=values[3])
            elif non_null and kind == "string":
                strings.append(name)
            out["columns"][name] = p
        for name in strings:
            out["columns"][name]["top"] = _top_values(con, name, rows)
        return out
    finally:
        con.close()


def _top_values(con, name: str, rows: int) -> list[list]:
    """The TOP most frequent values of a string column and their shares of all rows: the
    candidates from DuckDB's approximate top-k, counted exactly in a second pass."""
    c = _q(name)
    candidates = con.execute(f"SELECT approx_top_k({c}, {TOP * 2}) FROM staged").fetchone()[0]
    candidates = [v for v in candidates or [] if v is not None]
    if not candidates:
        return []
    counted = con.execute(
        f"SELECT {c}, count(*) AS n FROM staged WHERE {c} IN (SELECT unnest(?::VARCHAR[])) "
        f"GROUP BY 1 ORDER BY n DESC, 1 LIMIT {TOP}", [candidates]).fetchall()
    return [[str(v), n / rows] for v, n in counted]
