"""`table/<dataset>`: the dataset as one SQL table over all its cleaned partitions."""


import dagster as dg

from ..contracts import Contract
from ..lake import cleaned_prefix, rejected_prefix
from ..resources.catalog import CatalogResource
from ..resources.storage import StorageResource
from .clean import effective_contract


def _layout(store, prefix: str, partition_column: str | None) -> tuple[bool, list[str]]:
    """Whether any Parquet file exists under `prefix`, and the hive partition values present."""
    found, values = False, set()
    for o in store.list(prefix):
        if not o.key.endswith(".parquet"):
            continue
        found = True
        if partition_column:
            for part in o.key[len(prefix):].strip("/").split("/")[:-1]:
                col, _, value = part.partition("=")
                if col == partition_column:
                    values.add(value)
    return found, sorted(values)


def build_table_asset(contract: Contract, partitions: dg.PartitionsDefinition,
                      cleaned_key: dg.AssetKey) -> dg.AssetsDefinition:
    ds = contract.name

    @dg.asset(
        key=["table", ds],
        deps=[cleaned_key],
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=ds,
        kinds={"duckdb", "sql"},
        description=(
            f"SQL table `{ds}` over every cleaned partition (and `{ds}_rejected` over the "
            "rejected rows), refreshed when partitions change."
        ),
    )
    def table(context: dg.AssetExecutionContext, storage: StorageResource,
              catalog: CatalogResource) -> dg.MaterializeResult:
        lake = storage.lake()
        eff = effective_contract(contract, lake)
        has_rejects, _ = _layout(lake, rejected_prefix(ds), None)
        has_data, values = _layout(lake, cleaned_prefix(ds), eff.partition_column)
        sql = catalog.register_table(
            ds,
            eff.columns,
            lake.uri(cleaned_prefix(ds)),
            has_data=has_data,
            partition_column=eff.partition_column,
            rejected_uri=lake.uri(rejected_prefix(ds)) if has_rejects else None,
            partition_values=values,
        )
        rows = catalog.row_count(ds)
        context.log.info(f"table {ds} registered: {rows} rows")
        return dg.MaterializeResult(metadata={
            "sql": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            "table_rows": rows,
            "partitions": len(values),
            "query": f"SELECT * FROM {ds} LIMIT 10",
        })

    return table
