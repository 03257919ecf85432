"""Table-level checks of what is committed, run without re-materializing anything.

For a dataset's current Iceberg snapshot: the primary key is unique and non-null, the table's
schema is the contract's, the rejected share of the committed records is within the contract's
thresholds, and every committed file's rows reconcile with its staging record (records counted
in the raw file = rows in the table + rows in the rejected table). Each check is a function of
(tables, contract[, lake]) returning an `AuditResult`, so a scheduled `@asset_check` can run the
same code; `committed_checks` runs them all for one dataset.

Row counts per file come from manifests (each data file's `_source_key` bounds and record
count); only files holding rows of several files (after compaction) are read, and only their
two lineage columns. The primary-key check reads the key columns of every data file.
"""

from __future__ import annotations

import dataclasses
import tempfile

import duckdb
import pyarrow.parquet as pq
from pyiceberg.conversions import from_bytes
from pyiceberg.table import Table
from pyiceberg.types import LongType, StringType

from .. import staging as st
from ..assets.audit import ERROR, WARN, AuditResult, reconcile_counts, rejected_share
from ..assets.keys import MEMORY_LIMIT, _load
from ..contracts import Contract
from ..resources.storage import ObjectStore
from ..sql import quote_ident as _q
from ..sql import quote_literal as _lit
from ..tables.schema import SOURCE_KEY, SOURCE_VERSION, SchemaChangeError, plan_evolution, \
    table_columns

SAMPLE = 5


@dataclasses.dataclass
class KeyRows:
    """Rows of one raw file (key) in a table's current snapshot, and their version(s)."""

    rows: int = 0
    versions: set[int] = dataclasses.field(default_factory=set)


def rows_by_key(table: Table | None) -> dict[str, KeyRows]:
    """Rows per raw file key in the table's current snapshot (manifests first, see module)."""
    out: dict[str, KeyRows] = {}
    if table is None or table.current_snapshot() is None:
        return out
    schema = table.schema()
    kid = schema.find_field(SOURCE_KEY).field_id
    vid = schema.find_field(SOURCE_VERSION).field_id
    for task in table.scan().plan_files():
        f = task.file
        lo, hi = (f.lower_bounds or {}).get(kid), (f.upper_bounds or {}).get(kid)
        vlo, vhi = (f.lower_bounds or {}).get(vid), (f.upper_bounds or {}).get(vid)
        if lo is not None and lo == hi and vlo is not None and vlo == vhi:
            k = out.setdefault(from_bytes(StringType(), lo), KeyRows())
            k.rows += f.record_count
            k.versions.add(from_bytes(LongType(), vhi))
            continue
        with table.io.new_input(f.file_path).open() as stream:
            lineage = pq.read_table(stream, columns=[SOURCE_KEY, SOURCE_VERSION])
        for row in lineage.group_by([SOURCE_KEY, SOURCE_VERSION]).aggregate(
                [(SOURCE_KEY, "count")]).to_pylist():
            k = out.setdefault(row[SOURCE_KEY], KeyRows())
            k.rows += row[f"{SOURCE_KEY}_count"]
            k.versions.add(row[SOURCE_VERSION])
    return out


def _total(table: Table | None) -> int:
    snap = table.current_snapshot() if table is not None else None
    return int(snap.summary.get("total-records") or 0) if snap else 0


def check_primary_key(table: Table, contract: Contract) -> AuditResult:
    """`primary_key_unique` over the whole current snapshot: no null key, no duplicate key."""
    name = "primary_key_unique"
    pk = contract.primary_key
    if not pk:
        return AuditResult(name, True, metadata={"note": "no primary key declared"})
    paths = [t.file.file_path for t in table.scan().plan_files()]
    keys = ", ".join(_q(c) for c in pk)
    tuple_ = f"({keys})" if len(pk) > 1 else keys
    any_null = " OR ".join(f"{_q(c)} IS NULL" for c in pk)
    with tempfile.TemporaryDirectory(prefix="pk-") as tmp:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit='{MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory={_lit(tmp)}")
            n, _ = _load(con, "committed", table, [(p, p) for p in paths], pk)
            if n == 0:
                return AuditResult(name, True, metadata={"rows": 0})
            nulls, dups = con.execute(
                f"SELECT count(*) FILTER ({any_null}), count(*) FILTER (NOT ({any_null})) - "
                f"count(DISTINCT {tuple_}) FILTER (NOT ({any_null})) FROM committed"
            ).fetchall()[0]
            sample = con.execute(
                f"SELECT {keys}, count(*) FROM committed WHERE NOT ({any_null}) GROUP BY ALL "
                f"HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {SAMPLE}").fetchall() \
                if dups else []
        finally:
            con.close()
    meta = {"rows": n, "null_keys": nulls, "duplicate_keys": dups,
            "sample": [[str(v) for v in row] for row in sample]}
    if nulls or dups:
        parts = ([f"{nulls} row(s) with a null key"] if nulls else []) + (
            [f"{dups} duplicate key(s), e.g. " + ", ".join(
                f"{list(map(str, r[:-1]))} x{r[-1]}" for r in sample)] if dups else [])
        return AuditResult(name, False, ERROR, "; ".join(parts), meta)
    return AuditResult(name, True, metadata=meta)


def check_schema(table: Table, contract: Contract) -> AuditResult:
    """`schema_matches_contract`: the table's columns and types are the contract's.

    A change the next run will apply (an added column, a widened decimal) is a WARN; a change
    the platform refuses (removed, renamed or retyped columns) is an ERROR.
    """
    name = "schema_matches_contract"
    try:
        evolution = plan_evolution(table.schema(), table_columns(contract), spec=table.spec(),
                                   partition_column=contract.partition_column,
                                   table=contract.name)
    except SchemaChangeError as e:
        return AuditResult(name, False, ERROR, str(e))
    if evolution:
        return AuditResult(name, False, WARN, "the contract changed; the next run evolves the "
                           f"table: {evolution.describe()}")
    return AuditResult(name, True, metadata={"columns": len(table.schema().fields)})


def check_rejected_share(data: Table, rejected: Table | None, contract: Contract) -> AuditResult:
    """`rejected_share` of all committed records (rows + rejected rows) vs the contract."""
    rows, bad = _total(data), _total(rejected)
    result = rejected_share(contract, bad, rows + bad)
    result.metadata["records"] = rows + bad
    return result


def check_rows_reconcile(data: Table, rejected: Table | None, lake: ObjectStore,
                         contract: Contract) -> AuditResult:
    """`rows_reconcile` per committed file: its staging record's record count = its rows in the
    table + its rows in the rejected table, all of one version."""
    name = "rows_reconcile"
    good, bad = rows_by_key(data), rows_by_key(rejected)
    problems: dict[str, str] = {}
    for key in sorted(set(good) | set(bad)):
        g, b = good.get(key, KeyRows()), bad.get(key, KeyRows())
        versions = g.versions | b.versions
        if len(versions) != 1:
            problems[key] = f"rows of several versions committed: {sorted(versions)}"
            continue
        version = versions.pop()
        record = st.read_record(lake, contract.name, key, version)
        if record is None:
            problems[key] = f"no staging record of the committed version {version}"
            continue
        result = reconcile_counts(record.source_records, g.rows, b.rows)
        if not result.passed:
            problems[key] = result.reason.replace("were staged", "are in the table").replace(
                "rejected (", "in the rejected table (")
    meta = {"files": len(set(good) | set(bad)), "failed": problems}
    if problems:
        first = "; ".join(f"{k}: {v}" for k, v in list(problems.items())[:SAMPLE])
        return AuditResult(name, False, ERROR, f"{len(problems)} file(s) do not reconcile: "
                           f"{first}", meta)
    return AuditResult(name, True, metadata=meta)


def committed_checks(contract: Contract, data: Table | None, rejected: Table | None,
                     lake: ObjectStore) -> list[AuditResult]:
    """Every table-level check of one dataset's current snapshot. Without a table (nothing
    committed yet) there is one failed WARN result, `table_exists`."""
    if data is None:
        return [AuditResult("table_exists", False, WARN, "no table yet: nothing committed")]
    return [
        check_primary_key(data, contract),
        check_schema(data, contract),
        check_rejected_share(data, rejected, contract),
        check_rows_reconcile(data, rejected, lake, contract),
    ]


def check_drift(contract: Contract, lake: ObjectStore) -> AuditResult:
    """`drift` as the last run that committed files left it: a WARN naming the files of that
    run whose columns drifted (from the drift history in the lake), else a pass."""
    from ..monitor.drift import read_history

    name = "drift"
    entries = read_history(lake, contract.name)
    if not entries:
        return AuditResult(name, True, metadata={"note": "no drift history yet"})
    last = [e for e in entries if e.get("run_id") == entries[-1].get("run_id")]
    drifted = {e["key"]: e["drifted"] for e in last if e.get("drifted")}
    meta = {"files": len(last), "history_files": len(entries), "drifted": drifted,
            "threshold": contract.checks.drift_threshold}
    if drifted:
        return AuditResult(name, False, WARN, f"{len(drifted)} of the last run's {len(last)} "
                           "file(s) drifted: " + "; ".join(
                               f"{k}: {', '.join(sorted(v))}" for k, v in
                               list(drifted.items())[:SAMPLE]), meta)
    return AuditResult(name, True, metadata=meta)


def monitoring_checks(contract: Contract, data: Table | None, lake: ObjectStore
                      ) -> list[tuple[AuditResult, str]]:
    """Freshness (with a max_age) and drift (table datasets) of one dataset, each with where
    it was read from."""
    from ..monitor.freshness import check_freshness

    out = []
    if contract.checks.max_age_seconds is not None:
        out.append((check_freshness(contract, lake, data), "recorded uploads"))
    if contract.kind == "table":
        out.append((check_drift(contract, lake), "drift history"))
    return out
