"""`table/<dataset>`: the dataset as one SQL table over all its cleaned partitions."""


import dagster as dg

from ..contracts import Contract
from ..lake import cleaned_prefix, rejected_prefix
from ..resources.catalog import CatalogResource
from ..resources.storage import StorageResource
from .clean import effective_contract


def _has_objects(store, prefix: str) -> bool:
    return any(o.key.endswith(".parquet") for o in store.list(prefix))


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
        has_rejects = _has_objects(lake, rejected_prefix(ds))
        sql = catalog.register_table(
            ds,
            eff.columns,
            lake.uri(cleaned_prefix(ds)),
            has_data=_has_objects(lake, cleaned_prefix(ds)),
            partition_column=eff.partition_column,
            rejected_uri=lake.uri(rejected_prefix(ds)) if has_rejects else None,
        )
        rows = catalog.row_count(ds)
        context.log.info(f"table {ds} registered: {rows} rows")
        return dg.MaterializeResult(metadata={
            "sql": dg.MetadataValue.md(f"```sql\n{sql}\n```"),
            "table_rows": rows,
            "query": f"SELECT * FROM {ds} LIMIT 10",
        })

    return table
