"""Bench sides that are ours: `clean_file` alone, and the real ingest job into Iceberg.

- ours: `clean_file` as the platform calls it: field ids from a real table schema
  (`tables.schema.new_schema` / `field_ids`), the lineage constants in every file.
- ours_commit: the dataset's real ingest job (copy and hash the raw bytes, clean_file, stage
  into the Iceberg table's data folder, audits, one commit, views) run in-process on a Dagster
  instance configured as `make dev` configures it (`data_platform.instance`: its SQLite run and
  event storage, in a DAGSTER_HOME that clean_csv.py keeps across rounds; an in-memory instance
  would leave out the ~40 event writes every real run pays for), with a local SQLite Iceberg
  catalog under a temporary PLATFORM_DATA_DIR. The committed rows are read back through the
  DuckDB views (`DuckDBCatalog().query`) and cross-checked with the snapshot summary. Phases
  are timed by wrapping the functions the assets call (bench only; nothing in the platform
  changes).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from peers import cpu, kind, out_bytes, profile


def ours_call(path: Path, contract_dict: dict) -> tuple:
    """(contract, keyword arguments) of `clean_file` as the platform calls it: field ids from a
    real table schema, the lineage constants."""
    from data_platform.contracts import parse_contract
    from data_platform.tables.schema import (
        SOURCE_KEY,
        SOURCE_VERSION,
        field_ids,
        new_schema,
        rejected_columns,
        table_columns,
    )

    contract = parse_contract(contract_dict, where="bench")
    return contract, {"field_ids": field_ids(new_schema(table_columns(contract))),
                      "rejected_field_ids": field_ids(new_schema(rejected_columns())),
                      "constants": {SOURCE_KEY: ("VARCHAR", path.name),
                                    SOURCE_VERSION: ("BIGINT", time.time_ns())}}


def side_ours(path: Path, out: Path, contract_dict: dict, module: str = "data_platform.cleaning",
              memory_limit: str | None = None) -> dict:
    import importlib

    clean_file = importlib.import_module(module).clean_file
    # pyarrow imports pandas on its first list conversion (the reject writer): 0.4 s that the
    # platform's run never pays (Dagster has imported it). Outside the timing, like all imports.
    importlib.import_module("pandas")
    phases = _instrument_clean() if module == "data_platform.cleaning" else Phases()
    contract, kwargs = ours_call(path, contract_dict)
    if memory_limit:
        kwargs["memory_limit"] = memory_limit
    t, c = time.perf_counter(), cpu()
    try:
        res = clean_file(path, contract, out, source_key=f"raw/bench_orders/{path.name}",
                         **kwargs)
    except Exception as e:  # a failure is a result too (e.g. DuckDB out of memory)
        return {"error": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - t,
                "cpu_seconds": cpu() - c}
    seconds, c = time.perf_counter() - t, cpu() - c
    rejected_lines: list = []
    if res.rejected_file is not None:
        import pyarrow.parquet as pq

        tbl = pq.read_table(res.rejected_file, columns=["line", "error_type"])
        rejected_lines = [[a, b] for a, b in zip(tbl["line"].to_pylist(),
                                                 tbl["error_type"].to_pylist())]
    return {"seconds": seconds, "cpu_seconds": c, "rows_in": res.rows_in,
            "rows_written": res.rows_written, "source_records": res.source_records,
            "rows_rejected": res.rows_rejected, "parse_rejects": res.parse_rejects,
            "contract_rejects": res.contract_rejects, "files": len(res.files),
            "out_bytes": out_bytes(out), "rejected_lines": rejected_lines,
            "profile": profile([f.path for f in res.files]), "phases": phases.seconds,
            "phases_rss_mb": phases.rss_mb}


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Phases:
    """Wall seconds spent inside wrapped functions, by phase (calls from any thread)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.rss_mb: dict[str, float] = {}  # the process's RSS high-water mark after the phase

    def wrap(self, owner, attr: str, phase: str) -> None:
        orig = getattr(owner, attr, None)
        if orig is None:  # renamed in the platform: that phase is simply not shown
            return

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return orig(*args, **kwargs)
            finally:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t
                self.rss_mb[phase] = _maxrss_mb()

        setattr(owner, attr, timed)


# Phases on the run's critical path, in order; the rest overlap them or nest inside them.
SEQUENTIAL = ("copy raw file (names SQL would take for patterns)", "catalog connection",
              "schema + table setup", "clean_file", "upload staged files", "audits",
              "commit (data + rejected)", "verify commit",
              "waits for the handed-over profile (before drift)",
              "drift check", "records + ledger I/O")
OVERLAPPING = {"record count + content hash (one read, thread inside clean_file)": "clean_file",
               "content hash alone (thread inside clean_file)": "clean_file",
               "column profile (thread from when the files are written)": "clean_file",
               "primary-key facts (thread from when the files are written)": "clean_file",
               "waits for the key facts (inside commit)": "commit (data + rejected)",
               "primary-key check (inside commit)": "commit (data + rejected)",
               "expose views (thread, beside the checks' events)": "other"}


# Inside clean_file (CSV): what it does besides the one COPY a bare DuckDB run also does.
CLEAN_PHASES = ("sniff + header", "parse rejects -> lines + Parquet", "rejected file",
                "collect staged files")
CLEAN_OVERLAPPING = ("record count (thread)",)


def _instrument_clean() -> Phases:
    import data_platform.cleaning as cleaning_pkg
    import data_platform.cleaning.csv_engine as csv_mod

    ph = Phases()
    ph.wrap(csv_mod, "_sniff_text", "sniff + header")
    ph.wrap(csv_mod, "_read_header", "sniff + header")
    ph.wrap(csv_mod, "write_parse_rejects", "parse rejects -> lines + Parquet")
    ph.wrap(csv_mod, "_write_rejected", "rejected file")
    ph.wrap(csv_mod, "_collect_ok", "collect staged files")
    ph.wrap(cleaning_pkg, "scan_source", "record count (thread)")
    return ph


def _instrument() -> Phases:
    import data_platform.assets.clean as clean_mod
    import data_platform.assets.reads as reads_mod
    import data_platform.assets.table as table_mod
    import data_platform.cleaning as cleaning_pkg
    from data_platform.resources.catalog import DuckDBCatalog
    from data_platform.resources.storage import LocalObjectStore

    ph = Phases()
    ph.wrap(LocalObjectStore, "fetch", "copy raw file (names SQL would take for patterns)")
    ph.wrap(clean_mod, "effective_contract", "schema + table setup")
    ph.wrap(clean_mod, "ensure_dataset_tables", "schema + table setup")
    ph.wrap(clean_mod, "clean_file", "clean_file")
    ph.wrap(DuckDBCatalog, "iceberg", "catalog connection")
    ph.wrap(reads_mod.Pending, "key_facts", "waits for the key facts (inside commit)")
    ph.wrap(reads_mod.Pending, "column_profile",
            "waits for the handed-over profile (before drift)")
    ph.wrap(clean_mod, "profile_files", "column profile (thread from when the files are written)")
    ph.wrap(clean_mod, "key_facts", "primary-key facts (thread from when the files are written)")
    ph.wrap(LocalObjectStore, "put_file", "upload staged files")
    ph.wrap(table_mod, "_drift_result", "drift check")
    ph.wrap(clean_mod, "audit_staged", "audits")
    ph.wrap(table_mod, "commit_versions", "commit (data + rejected)")
    ph.wrap(table_mod, "verify_commit", "verify commit")
    ph.wrap(DuckDBCatalog, "expose", "expose views (thread, beside the checks' events)")
    ph.wrap(LocalObjectStore, "put_bytes", "records + ledger I/O")
    ph.wrap(LocalObjectStore, "get_bytes", "records + ledger I/O")
    ph.wrap(cleaning_pkg, "scan_source",
            "record count + content hash (one read, thread inside clean_file)")
    ph.wrap(cleaning_pkg, "feed_hasher", "content hash alone (thread inside clean_file)")
    ph.wrap(table_mod, "primary_key_conflicts", "primary-key check (inside commit)")
    return ph


def side_ours_commit(path: Path, out: Path, contract_dict: dict,
                     home: Path | None = None) -> dict:
    """The real ingest job into a local Iceberg table; rows read back through the views.
    `home`: the instance's DAGSTER_HOME (default: a new one under `out`)."""
    data = out / "data"
    for var in [v for v in os.environ if v.startswith("PLATFORM_")]:
        del os.environ[var]  # only the temporary data folder, as the tests do
    os.environ["PLATFORM_DATA_DIR"] = str(data)
    raw = data / "raw" / contract_dict["name"] / path.name
    raw.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, raw)  # the platform copies it again itself, inside the timed run
    except OSError:
        shutil.copyfile(path, raw)
    import dagster as dg
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )
    from data_platform.contracts import parse_contract
    from data_platform.definitions import build_definitions
    from data_platform.resources import DuckDBCatalog
    import importlib

    for module in ("pyiceberg.catalog.sql", "pyiceberg.io.pyarrow"):  # imported lazily by the
        importlib.import_module(module)  # run: outside the timing, like every side's imports

    contract = parse_contract(contract_dict, where="bench")
    defs = build_definitions(contracts={contract.name: contract})
    from data_platform.instance import write_instance_yaml

    home = home or out / "dagster_home"
    write_instance_yaml(home)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions(f"raw_{contract.name}", [path.name])
    job = defs.resolve_job_def(f"ingest_{contract.name}_job")
    tags = {ASSET_PARTITION_RANGE_START_TAG: path.name, ASSET_PARTITION_RANGE_END_TAG: path.name}
    phases = _instrument()
    rss_before = _maxrss_mb()
    t, c = time.perf_counter(), cpu()
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    seconds, c = time.perf_counter() - t, cpu() - c

    # Read the committed rows back: the views over the current snapshots, and the summaries.
    cat = DuckDBCatalog()
    names = [c["name"] for c in contract_dict["columns"]]
    counts = cat.query(f"SELECT count(*), {', '.join(f'count({n})' for n in names)} "
                       f"FROM {contract.name}")[0]
    rejected = cat.row_count(f"{contract.name}_rejected")
    ice = cat.iceberg()
    summary = {}
    for name in (contract.name, f"{contract.name}_rejected"):
        snap = ice.load_table(("platform", name)).current_snapshot()
        summary[name] = int(snap.summary.get("total-records") or 0) if snap else 0
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    arrow = schema_to_pyarrow(ice.load_table(("platform", contract.name)).schema())
    types = {n: kind(arrow.field(n).type) for n in arrow.names}
    res = {"seconds": seconds, "cpu_seconds": c, "rows_written": counts[0],
           "rows_rejected": rejected, "snapshot_records": summary,
           "out_bytes": out_bytes(data / "lake"), "run_success": result.success,
           "checks": checks, "phases": phases.seconds,
           "phases_rss_mb": {"before the run": rss_before, **phases.rss_mb},
           "profile": {"rows": counts[0], "types": types,
                       "nulls": {n: counts[0] - k for n, k in zip(names, counts[1:])}}}
    res["rows_in"] = res["rows_written"] + res["rows_rejected"]
    return res
