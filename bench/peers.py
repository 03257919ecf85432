"""Bench sides beyond pandas: bare engines making the same typed Parquet, and ours end to end.

Each function runs inside the child process `clean_csv.py --side NAME` starts, so its memory is
measured alone; each returns the timing and what it wrote, for the correctness column.
- duckdb_bare: DuckDB's own `COPY (SELECT * FROM read_csv(<contract types>, store_rejects))`:
  the fastest way DuckDB makes this Parquet, with none of our rules (no line numbers, no
  decimal/not-null row rules, no lineage columns or field ids).
- polars: `scan_csv(schema=...)` -> `sink_parquet`, streaming. Polars cannot reject a row:
  with `ignore_errors=True` a bad value becomes NULL and the row is kept (without it the
  first bad value stops the file), so its rows_written includes the malformed rows.
- ours_commit: the platform's real ingest job (copy and hash the raw bytes, clean_file, stage
  into the Iceberg table's data folder, audits, one commit) on an ephemeral Dagster instance
  with a local SQLite Iceberg catalog; the rows are read back from the committed snapshot.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

NULLS = ["", "NA", "N/A", "NULL", "null", "NaN"]  # the contract's default null markers
DUCK_TYPES = {"int": "BIGINT", "float": "DOUBLE", "timestamp": "TIMESTAMPTZ", "date": "DATE",
              "string": "VARCHAR", "bool": "BOOLEAN"}


def _cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _out_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.exists() else 0


def side_duckdb_bare(path: Path, out: Path, contract: dict) -> dict:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    cols = "{" + ", ".join(f"'{c['name']}': '{DUCK_TYPES[c['type']]}'"
                           for c in contract["columns"]) + "}"
    t, cpu = time.perf_counter(), _cpu()
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order=false")
    con.execute(
        f"COPY (SELECT * FROM read_csv('{path}', columns={cols}, header=true, auto_detect=false, "
        f"nullstr={NULLS!r}, store_rejects=true, timestampformat='ISO', "
        f"dateformat='%Y-%m-%d')) "
        f"TO '{out / 'out.parquet'}' (FORMAT parquet, COMPRESSION snappy)")
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    written = con.execute(f"SELECT count(*) FROM '{out / 'out.parquet'}'").fetchone()[0]
    rejected = con.execute("SELECT count(DISTINCT line) FROM reject_errors").fetchone()[0]
    return {"seconds": seconds, "cpu_seconds": cpu, "rows_in": written + rejected,
            "rows_written": written, "rows_rejected": rejected, "out_bytes": _out_bytes(out),
            "note": "no line numbers, no row rules (null ids kept), no lineage/field ids"}


def side_polars(path: Path, out: Path, contract: dict) -> dict:
    try:
        import polars as pl
    except ImportError:
        return {"error": "polars is not installed (pip install -e '.[bench]')", "seconds": 0.0,
                "cpu_seconds": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    types = {"int": pl.Int64, "float": pl.Float64, "string": pl.String, "date": pl.Date,
             "timestamp": pl.String, "bool": pl.Boolean}
    schema = {c["name"]: types[c["type"]] for c in contract["columns"]}
    ts = [c["name"] for c in contract["columns"] if c["type"] == "timestamp"]
    t, cpu = time.perf_counter(), _cpu()
    # Timestamps with mixed offsets are read as text and converted to UTC, as ours does.
    lf = pl.scan_csv(path, schema=schema, ignore_errors=True, truncate_ragged_lines=True,
                     null_values=NULLS)
    lf = lf.with_columns([pl.col(c).str.to_datetime(time_zone="UTC", strict=False,
                                                    time_unit="us") for c in ts])
    lf.sink_parquet(out / "out.parquet", compression="snappy")
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    written = pl.scan_parquet(out / "out.parquet").select(pl.len()).collect().item()
    return {"seconds": seconds, "cpu_seconds": cpu, "rows_in": written, "rows_written": written,
            "rows_rejected": 0, "out_bytes": _out_bytes(out),
            "note": "bad values become NULL and the row is kept; no rejects"}


def side_ours_commit(path: Path, out: Path, contract_dict: dict) -> dict:
    """The real ingest job into a local Iceberg table; rows read back from the snapshot."""
    data = out / "data"
    (data / "raw" / contract_dict["name"]).mkdir(parents=True, exist_ok=True)
    os.environ["PLATFORM_DATA_DIR"] = str(data)
    raw = data / "raw" / contract_dict["name"] / path.name
    os.link(path, raw)  # the platform copies it again itself, inside the timed run
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )
    from data_platform.contracts import parse_contract
    from data_platform.definitions import build_definitions
    from data_platform.resources import DuckDBCatalog

    contract = parse_contract(contract_dict, where="bench")
    defs = build_definitions(contracts={contract.name: contract})
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(f"raw_{contract.name}", [path.name])
    job = defs.resolve_job_def(f"ingest_{contract.name}_job")
    tags = {ASSET_PARTITION_RANGE_START_TAG: path.name, ASSET_PARTITION_RANGE_END_TAG: path.name}
    t, cpu = time.perf_counter(), _cpu()
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    seconds, cpu = time.perf_counter() - t, _cpu() - cpu
    ice = DuckDBCatalog().iceberg()
    rows = {}
    for name in (contract.name, f"{contract.name}_rejected"):
        snap = ice.load_table(("platform", name)).current_snapshot()
        rows[name] = int(snap.summary.get("total-records") or 0) if snap else 0
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    res = {"seconds": seconds, "cpu_seconds": cpu, "rows_written": rows[contract.name],
           "rows_rejected": rows[f"{contract.name}_rejected"],
           "out_bytes": _out_bytes(data / "lake"), "run_success": result.success,
           "checks": checks}
    res["rows_in"] = res["rows_written"] + res["rows_rejected"]
    return res
