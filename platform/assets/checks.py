"""Asset checks for every dataset; each reads what was actually published, never a counter alone.

On `cleaned/<dataset>` (per partition, blocking, so a failure stops the table in the same run):
row reconciliation, schema against the contract, rejected share. On `table/<dataset>`: primary
key unique and non-null, and table row count equal to the Parquet footers' row count.
"""


from collections.abc import Iterable

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from ..contracts import Column, Contract
from ..lake import cleaned_prefix, read_manifest
from ..resources.catalog import CatalogResource
from ..resources.storage import ObjectStore, StorageResource
from ..sql import quote_ident
from .clean import effective_contract

_ARROW = {
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "string": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_type(column: Column) -> pa.DataType:
    if column.type.startswith("decimal"):
        p, s = column.type[len("decimal("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    return _ARROW[column.type]


def _footer(store: ObjectStore, key: str) -> pq.FileMetaData:
    """The Parquet footer of a stored file, read without fetching the whole file."""
    with store.open_read(key) as f:
        return pq.ParquetFile(pa.PythonFile(f, mode="r")).metadata


def reconcile(lake: ObjectStore, dataset: str, keys: Iterable[str]) -> tuple[bool, dict]:
    """Rows in == rows in the published cleaned files + rows in the published rejected file."""
    problems, totals = {}, {"rows_in": 0, "rows_written": 0, "rows_rejected": 0}
    for key in keys:
        m = read_manifest(lake, dataset, key)
        if m is None:
            problems[key] = "no manifest: the partition was never published"
            continue
        written = sum(_footer(lake, f).num_rows for f in m.files)
        rejected = _footer(lake, m.rejected_file).num_rows if m.rejected_file else 0
        totals["rows_in"] += m.rows_in
        totals["rows_written"] += written
        totals["rows_rejected"] += rejected
        if m.rows_in != written + rejected:
            problems[key] = f"rows_in={m.rows_in} != written {written} + rejected {rejected}"
    return not problems, {**totals, "problems": dg.MetadataValue.json(problems)}


def schema_problems(lake: ObjectStore, contract: Contract, keys: Iterable[str]) -> dict:
    expected = {c.name: arrow_type(c) for c in contract.columns
                if c.name != contract.partition_column}
    problems = {}
    for key in keys:
        m = read_manifest(lake, contract.name, key)
        if m is None:
            problems[key] = "no manifest"
            continue
        for f in m.files:
            schema = _footer(lake, f).schema.to_arrow_schema()
            actual = {n: schema.field(n).type for n in schema.names}
            if actual != expected:
                diff = {
                    n: f"expected {expected.get(n)}, found {actual.get(n)}"
                    for n in sorted(set(expected) | set(actual))
                    if expected.get(n) != actual.get(n)
                }
                problems[f] = diff
    return problems


def build_checks(contract: Contract, partitions: dg.PartitionsDefinition,
                 cleaned_key: dg.AssetKey, table_key: dg.AssetKey) -> list:
    ds = contract.name

    @dg.asset_check(asset=cleaned_key, name="rows_reconcile", blocking=True,
                    partitions_def=partitions,
                    description="Rows in = rows written + rows rejected, counted in the "
                                "published Parquet files.")
    def rows_reconcile(context, storage: StorageResource) -> dg.AssetCheckResult:
        ok, meta = reconcile(storage.lake(), ds, context.partition_keys)
        return dg.AssetCheckResult(passed=ok, metadata=meta)

    @dg.asset_check(asset=cleaned_key, name="schema_matches_contract", blocking=True,
                    partitions_def=partitions,
                    description="Every cleaned file has exactly the contract's columns and types.")
    def schema_matches_contract(context, storage: StorageResource) -> dg.AssetCheckResult:
        lake = storage.lake()
        eff = effective_contract(contract, lake)
        problems = schema_problems(lake, eff, context.partition_keys)
        return dg.AssetCheckResult(passed=not problems,
                                   metadata={"problems": dg.MetadataValue.json(problems)})

    @dg.asset_check(asset=cleaned_key, name="rejected_share", blocking=True,
                    partitions_def=partitions,
                    description=f"Share of rejected rows per file: WARN above "
                                f"{contract.rejected_share_warn:.0%}, ERROR above "
                                f"{contract.rejected_share_error:.0%}.")
    def rejected_share(context, storage: StorageResource) -> dg.AssetCheckResult:
        lake = storage.lake()
        shares = {}
        for key in context.partition_keys:
            m = read_manifest(lake, ds, key)
            if m is not None:
                shares[key] = (m.rows_rejected / m.rows_in) if m.rows_in else 0.0
        worst = max(shares.values(), default=0.0)
        meta = {"worst_share": round(worst, 6),
                "shares": dg.MetadataValue.json({k: round(v, 6) for k, v in shares.items()})}
        if worst > contract.rejected_share_error:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                       metadata=meta)
        if worst > contract.rejected_share_warn:
            return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                       metadata=meta)
        return dg.AssetCheckResult(passed=True, metadata=meta)

    @dg.asset_check(asset=table_key, name="row_count_matches_parquet", blocking=True,
                    description="The table's row count equals the sum of the cleaned Parquet "
                                "files' footer row counts.")
    def row_count_matches_parquet(storage: StorageResource,
                                  catalog: CatalogResource) -> dg.AssetCheckResult:
        lake = storage.lake()
        parquet_rows = sum(_footer(lake, o.key).num_rows
                           for o in lake.list(cleaned_prefix(ds)) if o.key.endswith(".parquet"))
        table_rows = catalog.row_count(ds)
        return dg.AssetCheckResult(passed=parquet_rows == table_rows,
                                   metadata={"parquet_rows": parquet_rows,
                                             "table_rows": table_rows})

    checks = [rows_reconcile, schema_matches_contract, rejected_share, row_count_matches_parquet]

    if contract.primary_key:
        pk = ", ".join(quote_ident(c) for c in contract.primary_key)
        any_null = " OR ".join(f"{quote_ident(c)} IS NULL" for c in contract.primary_key)
        table = quote_ident(ds)

        @dg.asset_check(asset=table_key, name="primary_key_unique", blocking=True,
                        description=f"Primary key ({', '.join(contract.primary_key)}) is unique "
                                    "and never null across the whole table.")
        def primary_key_unique(catalog: CatalogResource) -> dg.AssetCheckResult:
            nulls = catalog.query(f"SELECT count(*) FROM {table} WHERE {any_null}")[0][0]
            dups = catalog.query(
                f'SELECT count(*), coalesce(sum(n), 0) FROM (SELECT {pk}, count(*) AS n '
                f"FROM {table} GROUP BY {pk} HAVING count(*) > 1)")[0]
            sample = catalog.query(
                f"SELECT {pk}, count(*) AS n FROM {table} GROUP BY {pk} HAVING count(*) > 1 "
                'ORDER BY n DESC LIMIT 5')
            return dg.AssetCheckResult(
                passed=nulls == 0 and dups[0] == 0,
                metadata={"null_keys": int(nulls), "duplicate_keys": int(dups[0]),
                          "rows_with_duplicate_keys": int(dups[1]),
                          "sample": dg.MetadataValue.json([list(map(str, r)) for r in sample])},
            )

        checks.append(primary_key_unique)
    return checks
