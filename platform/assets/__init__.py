"""Assets, checks and jobs, built per dataset from its contract."""

from __future__ import annotations

import dataclasses

import dagster as dg

from ..contracts import Contract
from .clean import build_cleaned_asset
from .table import build_table_asset


def partitions_name(dataset: str) -> str:
    return f"raw_{dataset}"


def job_name(dataset: str) -> str:
    return f"ingest_{dataset}_job"


@dataclasses.dataclass
class DatasetDefs:
    """Everything one dataset contributes to the Definitions."""

    contract: Contract
    partitions: dg.DynamicPartitionsDefinition
    raw: dg.AssetSpec
    assets: list[dg.AssetsDefinition]
    job: dg.UnresolvedAssetJobDefinition


def build_dataset(contract: Contract) -> DatasetDefs:
    """Build the raw -> cleaned -> table graph, its checks and its ingest job for one dataset."""
    ds = contract.name
    partitions = dg.DynamicPartitionsDefinition(name=partitions_name(ds))
    raw = dg.AssetSpec(
        key=["raw", ds],
        partitions_def=partitions,
        group_name=ds,
        kinds={"file"},
        description=f"Raw uploads of {ds} (raw/{ds}/...), one partition per object; "
                    "observed by the raw-upload sensor, never modified.",
    )
    cleaned = build_cleaned_asset(contract, partitions, raw.key)
    table = build_table_asset(contract, partitions, cleaned.key)
    job = dg.define_asset_job(
        name=job_name(ds),
        selection=dg.AssetSelection.assets(cleaned, table),
        # Steps are light except cleaning, which DuckDB already spreads over the cores; one
        # process per step would cost more in start-up than the steps themselves.
        executor_def=dg.in_process_executor,
        description=f"Stage and audit new raw files of {ds}, then commit the ones that passed "
                    "to its Iceberg table in one snapshot.",
    )
    return DatasetDefs(contract, partitions, raw, [cleaned, table], job)
